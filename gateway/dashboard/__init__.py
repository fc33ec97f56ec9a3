"""The operator dashboard under /dashboard (routes.py): server-rendered pages over the same
actions as the admin API (gateway/actions.py)."""
