"""The reports port: usage pages, stats, revenue and the price book, aggregated by the database.

Implemented by ``SqliteReportsMixin`` (sqlite_reports.py) and ``PostgresReportsMixin``
(postgres_reports.py); tests/admin/test_reports_contract.py checks both. Guarantees:

- Every report is one SQL statement (one snapshot) that also sums its groups into the
  ``total`` row: groups and total always agree, and both equal the sums over the usage records
  they cover.
- A ``Period`` is half-open, ``[start, end)`` in UTC; ``None`` leaves that side open.
- Day buckets are computed here, in Python, from the caller's time zone (zoneinfo), so both
  databases group rows by exactly the same instants whatever their own time zone data.
- ``list_usage_before`` pages by a (created_at, request_id) cursor: a row inserted between two
  pages can neither shift a row into the next page twice nor push one out of it.
- ``sync_prices`` diffs the catalog against the stored price book and writes the book and one
  audit event per changed model in the same transaction, so in a fleet of processes loading
  the same file only the first records the change.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from gateway.records import (
    AuditEvent,
    Cursor,
    Day,
    DayTotals,
    ModelTotals,
    Period,
    PriceChange,
    PriceRow,
    Totals,
    UsageRecord,
    UserTotals,
)
from gateway.views import price_view


class ReportsLedger(Protocol):
    async def list_usage_before(
        self, user_id: str, *, cursor: Cursor | None, limit: int
    ) -> tuple[list[UsageRecord], bool]:
        """Newest first, strictly after ``cursor``; returns (rows, has_more)."""

    async def usage_totals(
        self, *, user_id: str | None, period: Period
    ) -> tuple[Totals, list[ModelTotals]]:
        """Totals and the per provider:model breakdown (by cost, highest first)."""

    async def revenue_by_day(self, days: Sequence[Day]) -> tuple[Totals, list[DayTotals]]:
        """One row per given day (zeros included), in the order given, and their total."""

    async def top_users(
        self, *, period: Period, limit: int
    ) -> tuple[Totals, list[UserTotals], bool]:
        """All users' total and the ``limit`` users with the highest cost; has_more."""

    async def list_prices(self) -> list[PriceRow]:
        """The price book as last synced, by model name."""

    async def sync_prices(
        self, prices: Sequence[PriceRow], *, actor: str, reason: str | None = None
    ) -> list[PriceChange]:
        """Makes the book equal ``prices``; audits and returns what changed."""


# -- pure helpers shared by both implementations -------------------------------------------


ALL_TIME = Period()


def days_between(first: date, last: date, tz: ZoneInfo, *, clip: Period = ALL_TIME) -> list[Day]:
    """The local days ``first..last`` (inclusive) of ``tz`` as UTC intervals, clipped to
    ``clip``. Midnights are resolved with fold=0, so consecutive days tile the timeline with
    no gap or overlap even across DST changes (a skipped midnight maps to the transition)."""
    out: list[Day] = []
    day = first
    while day <= last:
        start = _midnight(day, tz)
        end = _midnight(day + timedelta(days=1), tz)
        if clip.start is not None and clip.start > start:
            start = clip.start
        if clip.end is not None and clip.end < end:
            end = clip.end
        if start < end:
            out.append(Day(day=day, start=start, end=end))
        day += timedelta(days=1)
    return out


def _midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(), tzinfo=tz).astimezone(UTC)


def totals_of(row: Mapping[str, Any]) -> Totals:
    """A Totals from a row holding the six standard aggregate columns (NULL sums are 0)."""
    return Totals(
        requests=int(row["requests"] or 0),
        prompt_tokens=int(row["prompt_tokens"] or 0),
        completion_tokens=int(row["completion_tokens"] or 0),
        cached_tokens=int(row["cached_tokens"] or 0),
        reasoning_tokens=int(row["reasoning_tokens"] or 0),
        cost=int(row["cost"] or 0),
    )


# The six aggregates every report shares, over usage_records aliased ``u``. ``count(u.cost)``
# rather than count(*) so an empty day of a LEFT JOIN counts 0, and rather than the request id
# so the covering indexes of migration 0003 answer without reading the table. SUM of an empty
# set is NULL in both databases; totals_of turns it into 0.
AGGREGATES = (
    "count(u.cost) AS requests, sum(u.prompt_tokens) AS prompt_tokens, "
    "sum(u.completion_tokens) AS completion_tokens, sum(u.cached_tokens) AS cached_tokens, "
    "sum(u.reasoning_tokens) AS reasoning_tokens, sum(u.cost) AS cost"
)
# The same six columns of a grouped CTE ``g``, and their sums: a report's total row is summed
# from its groups in the same statement, so one scan gives both and they always agree.
GROUPED = "requests, prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens, cost"
TOTALS = (
    "sum(requests) AS requests, sum(prompt_tokens) AS prompt_tokens, "
    "sum(completion_tokens) AS completion_tokens, sum(cached_tokens) AS cached_tokens, "
    "sum(reasoning_tokens) AS reasoning_tokens, sum(cost) AS cost"
)


def diff_prices(
    book: Iterable[PriceRow], prices: Sequence[PriceRow], *, actor: str, reason: str | None
) -> list[PriceChange]:
    """What syncing ``book`` to ``prices`` changes, each with its audit event
    (``price.set`` for a new model, ``price.change``, ``price.remove``)."""
    old = {row.model: row for row in book}
    new = {row.model: row for row in prices}
    changes: list[PriceChange] = []
    for name in sorted(old.keys() | new.keys()):
        before, after = old.get(name), new.get(name)
        if before == after:
            continue
        action = (
            "price.set" if before is None else "price.remove" if after is None else "price.change"
        )
        event = AuditEvent(
            actor=actor,
            action=action,
            target=name,
            reason=reason,
            details={
                "old": price_view(before) if before else None,
                "new": price_view(after) if after else None,
            },
        )
        changes.append(PriceChange(model=name, old=before, new=after, events=[event]))
    return changes
