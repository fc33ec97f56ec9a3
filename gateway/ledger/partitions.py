"""PostgreSQL's monthly usage partitions: added ahead and on demand, dropped by the retention.

``usage_records`` is partitioned by the UTC month of ``created_at`` (migration 0013), one
table per month named ``usage_records_YYYY_MM``. A month is added by the SQL function
``usage_records_add_month`` (a table attached to the parent, which never blocks the writes
or the reports). Months are added ahead (``prepare``: this month and the next, at startup and
daily) and on demand: before a batch is written, the writer adds any month of its records it
has not seen (``Months.cover``), so an insert never fails for want of a partition, whatever
the clock says (a record replayed from an old spill file, a host clock ahead).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from gateway.ledger.database import Database
from gateway.records import UsageRecord

# How long dropping a month may wait for the reports and writes on the table. The drop needs
# the table to itself for an instant; while it waits, new writes queue behind it, so it gives
# up soon and the next pass (a day later) tries again.
DROP_LOCK_TIMEOUT = "5s"
_PREFIX = "usage_records_"


def month_of(at: datetime) -> datetime:
    """The first instant of ``at``'s UTC month."""
    return at.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def shift(month: datetime, months: int) -> datetime:
    """The first instant of the UTC month ``months`` after (negative: before) ``month``'s."""
    start = month_of(month)
    index = start.year * 12 + start.month - 1 + months
    return start.replace(year=index // 12, month=index % 12 + 1)


def missing_partition(error: Exception) -> bool:
    """Whether ``error`` is PostgreSQL finding no partition for a row."""
    return str(error).startswith("no partition of relation")


class Months:
    """The months a writer knows to have a partition (a cache: ``forget`` when one may have
    been dropped)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._known: set[datetime] = set()

    async def cover(self, records: Iterable[UsageRecord]) -> None:
        """Adds the partition of every month of ``records`` not known to exist."""
        for month in sorted(_months(records) - self._known):
            await add_month(self._db, month)
            self._known.add(month)

    def forget(self) -> None:
        self._known.clear()


def _months(records: Iterable[UsageRecord]) -> set[datetime]:
    # Per record only a tuple: month_of on every record of every batch was a visible share
    # of a settlement's CPU.
    seen = set()
    for r in records:
        at = r.created_at
        if at.tzinfo is not UTC:
            at = at.astimezone(UTC)
        seen.add((at.year, at.month))
    return {datetime(year, month, 1, tzinfo=UTC) for year, month in seen}


async def add_month(db: Database, month: datetime) -> bool:
    """Adds the partition of ``month`` unless it exists; True when it added it."""
    row = await db.fetchrow("SELECT usage_records_add_month($1) AS added", month)
    return bool(row and row["added"])


async def partitions(db: Database) -> list[tuple[datetime, str]]:
    """(month, table) of every usage partition, oldest first."""
    rows = await db.fetch(
        "SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'usage_records'::regclass"
    )
    out = []
    for r in rows:
        year, month = r["name"].removeprefix(_PREFIX).split("_")
        out.append((datetime(int(year), int(month), 1, tzinfo=UTC), r["name"]))
    return sorted(out)


class PostgresUsageStorage:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def prepare(self, now: datetime) -> list[str]:
        month = month_of(now)
        added = []
        for m in (month, shift(month, 1)):
            if await add_month(self._db, m):
                added.append(m.strftime("%Y-%m"))
        return added

    async def months_before(self, month: datetime) -> list[str]:
        return [start.strftime("%Y-%m") for start, _ in await partitions(self._db) if start < month]

    async def drop_before(self, month: datetime) -> list[str]:
        dropped = []
        for start, name in await partitions(self._db):
            if start >= month:
                break
            async with self._db.transaction() as tx:
                await tx.execute(f"SET LOCAL lock_timeout = '{DROP_LOCK_TIMEOUT}'")
                await tx.execute(f'DROP TABLE "{name}"')
            dropped.append(start.strftime("%Y-%m"))
        return dropped
