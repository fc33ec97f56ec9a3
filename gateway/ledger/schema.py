"""Schema migrations shared by the ledger implementations.

Each dialect keeps plain SQL files in ``migrations/<dialect>/NNNN_name.sql``; an implementation
applies, in version order, those not yet recorded in its ``schema_migrations`` table.
"""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime
from importlib import resources

from gateway.records import UsageRecord

# usage_records columns in UsageRecord order (a column added later does not break the reads).
USAGE_COLUMNS = ", ".join(f.name for f in fields(UsageRecord))

# SQLite has no timestamp type: UTC text in this format sorts in time order (0001_init.sql).
SQLITE_TS = "%Y-%m-%d %H:%M:%S.%f"


def ts(value: datetime) -> str:
    return value.astimezone(UTC).strftime(SQLITE_TS)


def parse_ts(value: str) -> datetime:
    return datetime.strptime(value, SQLITE_TS).replace(tzinfo=UTC)


def migrations(dialect: str) -> list[tuple[int, str]]:
    """``(version, sql)`` for every migration file of ``dialect``, oldest first."""
    folder = resources.files("gateway.ledger") / "migrations" / dialect
    found = sorted(
        (p for p in folder.iterdir() if p.name.endswith(".sql")),
        key=lambda p: int(p.name.split("_", 1)[0]),
    )
    return [(int(p.name.split("_", 1)[0]), p.read_text()) for p in found]
