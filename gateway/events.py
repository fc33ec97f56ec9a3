"""Structured log events: the message of each is one JSON object, ``{"event": name, ...}``.

The message itself carries the fields, so an event stays machine-readable whatever handler
prints it (uvicorn's console format, Python's last-resort stderr handler, a log shipper that
keeps only the message); the same fields ride on the record (``extra``) for handlers that
read attributes. Values must be JSON-serializable (amounts as USD decimal strings).
"""

from __future__ import annotations

import logging

import orjson

# Attributes a LogRecord has already: logging refuses an ``extra`` that would overwrite them.
_RECORD_FIELDS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def emit(logger: logging.Logger, level: int, event: str, /, **fields: object) -> None:
    """Logs ``{"event": event, **fields}`` as one JSON line at ``level`` (positional-only, so
    an event may have a ``level`` field of its own)."""
    if not logger.isEnabledFor(level):
        return
    data = {"event": event, **fields}
    extra = {k: v for k, v in data.items() if k not in _RECORD_FIELDS}
    logger.log(level, "%s", orjson.dumps(data).decode(), extra=extra)
