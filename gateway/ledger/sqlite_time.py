"""Timestamps as the SQLite ledger stores them: fixed-width UTC text, so text order is time
order (``SQLITE_TS``, e.g. ``2026-11-30 12:00:00.000000``)."""

from __future__ import annotations

from datetime import UTC, datetime

SQLITE_TS = "%Y-%m-%d %H:%M:%S.%f"


def ts(value: datetime) -> str:
    """``value`` (aware) as stored text, in UTC."""
    return value.astimezone(UTC).strftime(SQLITE_TS)


def parse_ts(value: str) -> datetime:
    """Stored text back to an aware UTC datetime."""
    return datetime.strptime(value, SQLITE_TS).replace(tzinfo=UTC)
