"""The operator's HTTP API under /admin."""
