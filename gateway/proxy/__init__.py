"""The request path: one call from key to settlement."""
