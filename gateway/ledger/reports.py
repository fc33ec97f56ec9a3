"""Reports (the ``Reports`` port): usage pages, aggregates and the price book, written once.

The database aggregates. Each report is one SELECT (one snapshot) whose total row is summed
from its groups in the same statement. The aggregates read the rollups (rollups.py: whole
UTC days and hours) and only the sub-hour edges of a period from the usage rows, so a report
over a year costs about what one over a day does. Day buckets of a revenue report are computed
here, in Python, from the caller's time zone (zoneinfo), so both databases group by exactly
the same instants. Reads go through ``Database.read``: on SQLite a read-only connection
beside the writer thread, so a report never delays a settlement. PostgreSQL sums bigints as
``numeric``, so no total can overflow.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from gateway.ledger.audit import write_audit
from gateway.ledger.database import Database, Row
from gateway.ledger.price_book import UPSERT_PRICE, diff_prices, price, tiers_json
from gateway.ledger.rollups import SUMS, Rolled, gathered
from gateway.ledger.sql import (
    GROUPED,
    TOTALS,
    USAGE_COLUMNS,
    Params,
    totals_of,
    usage_of,
)
from gateway.records import UsageRecord, utcnow
from gateway.report_records import (
    Cursor,
    Day,
    DayTotals,
    GroupTotals,
    ModelTotals,
    Period,
    PriceChange,
    PriceRow,
    Totals,
    UsageFilter,
    UserTotals,
)

# The column each attribution breakdown groups by in the rows ('' for none, as in the rollups;
# ``tag``: json_each of the tags, see usage_groups); ``model`` is usage_totals' own breakdown.
GROUP_COLUMNS = {
    "key": "coalesce(u.key_id, '')",
    "end_user": "coalesce(u.end_user, '')",
    "session": "coalesce(u.session_id, '')",
    "tag": "coalesce(t.key, '')",
}
GROUPS = ("model", "key", "tag", "end_user", "session")
# The order of the usage pages, newest first (index usage_records_user_time).
NEWEST_FIRST = "ORDER BY created_at DESC, request_id DESC"


class SqlReports:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def list_usage(
        self, user_id: str, *, limit: int, offset: int
    ) -> tuple[list[UsageRecord], bool]:
        rows = await self._db.fetch(
            f"SELECT {USAGE_COLUMNS} FROM usage_records WHERE user_id = $1 {NEWEST_FIRST}"
            " LIMIT $2 OFFSET $3",
            user_id,
            limit + 1,
            offset,
        )
        return [usage(r) for r in rows[:limit]], len(rows) > limit

    async def list_usage_before(
        self, user_id: str, *, cursor: Cursor | None, limit: int, only: UsageFilter | None = None
    ) -> tuple[list[UsageRecord], bool]:
        p = Params()
        where = _filtered(p, user_id, only or UsageFilter())
        if cursor is not None:
            # Row-value comparison in the page order (created_at DESC, request_id DESC); the
            # plain bound on created_at lets an index on (user_id, created_at) start there
            # (PostgreSQL's usage_records_user_time, migration 0013).
            at = p(cursor.created_at)
            where += f" AND u.created_at <= {at} AND (u.created_at, u.request_id) < ({at}, "
            where += f"{p(cursor.request_id)})"
        limit_to = p(limit + 1)
        rows = await self._db.read(
            f"SELECT {USAGE_COLUMNS} FROM usage_records u {where} "
            f"ORDER BY u.created_at DESC, u.request_id DESC LIMIT {limit_to}",
            *p.values,
        )
        return [usage(r) for r in rows[:limit]], len(rows) > limit

    async def usage_since(
        self,
        *,
        user_id: str | None,
        period: Period,
        after: Cursor | None,
        limit: int,
        only: UsageFilter | None = None,
    ) -> list[UsageRecord]:
        p = Params()
        where = _filtered(p, user_id, UsageFilter(period, *_model_key(only)))
        if after is not None:
            # Row-value comparison in index order: each page is one range scan that starts
            # where the last one ended, however many rows came before it.
            at = p(after.created_at)
            keyset = (
                f"u.created_at >= {at} AND (u.created_at, u.request_id) > "
                f"({at}, {p(after.request_id)})"
            )
            where = f"{where} AND {keyset}" if where else f"WHERE {keyset}"
        rows = await self._db.read(
            f"SELECT {USAGE_COLUMNS} FROM usage_records u {where} "
            f"ORDER BY u.created_at, u.request_id LIMIT {p(limit)}",
            *p.values,
        )
        return [usage(r) for r in rows]

    async def usage_totals(
        self, *, user_id: str | None, period: Period
    ) -> tuple[Totals, list[ModelTotals]]:
        p = Params()
        calls = gathered(
            p,
            [period],
            rolled=[Rolled("call", ("r.provider", "r.model"))],
            columns=[("provider", "u.provider"), ("model", "u.model")],
            user_id=user_id,
        )
        if calls is None:
            return Totals(), []
        rows = await self._db.read(
            f"WITH g AS (SELECT provider, model, {SUMS} FROM ({calls}) s"
            " GROUP BY provider, model) "
            f"SELECT 1 AS grp, NULL AS provider, NULL AS model, {TOTALS} FROM g "
            f"UNION ALL SELECT 0, provider, model, {GROUPED} FROM g "
            "ORDER BY grp DESC, cost DESC, provider, model",
            *p.values,
        )
        return totals_of(rows[0]), [
            ModelTotals(provider=r["provider"], model=r["model"], totals=totals_of(r))
            for r in rows[1:]
        ]

    async def usage_groups(
        self, *, user_id: str | None, period: Period, group_by: str, limit: int
    ) -> tuple[Totals, list[GroupTotals], bool]:
        p = Params()
        if group_by == "key":
            rolled = [Rolled("call", ("r.key_id",))]
        else:
            # The calls without the attribute: all calls less those with it (a tagged call
            # once, however many tags it has).
            without = "tagged" if group_by == "tag" else group_by
            rolled = [
                Rolled(group_by, ("r.grp",)),
                Rolled("call", ("''",)),
                Rolled(without, ("''",), negate=True),
            ]
        groups = gathered(
            p,
            [period],
            rolled=rolled,
            columns=[("grp_key", GROUP_COLUMNS[group_by])],
            user_id=user_id,
            tags=group_by == "tag",
        )
        if groups is None:
            return Totals(), [], False
        if group_by == "tag":
            # A call counts in each of its tags' groups (untagged calls: the none group), so
            # the total is summed from each call once, in the same statement.
            calls = gathered(p, [period], rolled=[Rolled("call")], user_id=user_id)
            total = f"SELECT 1 AS grp, NULL AS grp_key, {SUMS} FROM ({calls}) c"
        else:
            total = f"SELECT 1 AS grp, NULL AS grp_key, {TOTALS} FROM g"
        # '' is the rollups' "none": the group of calls without the attribute, shown as NULL.
        # NULLs sort last in both databases.
        rows = await self._db.read(
            # A none group whose calls all have the attribute nets to zero: not a group.
            f"WITH g AS (SELECT grp_key, {SUMS} FROM ({groups}) s GROUP BY grp_key"
            " HAVING sum(requests) > 0) "
            f"SELECT * FROM ({total} UNION ALL "
            f"SELECT 0, NULLIF(grp_key, ''), {GROUPED} FROM g) x "
            "ORDER BY grp DESC, cost DESC, grp_key IS NULL, grp_key "
            f"LIMIT {p(limit + 2)}",
            *p.values,
        )
        found = [GroupTotals(group=r["grp_key"], totals=totals_of(r)) for r in rows[1:]]
        return totals_of(rows[0]), found[:limit], len(found) > limit

    async def spend_since(self, *, scope: str, since: datetime) -> int:
        kind, _, ident = scope.partition(":")
        p = Params()
        if kind == "k":
            calls = gathered(p, [Period(start=since)], rolled=[Rolled("call")], key_id=ident)
        else:
            calls = gathered(p, [Period(start=since)], rolled=[Rolled("call")], user_id=ident)
        if calls is None:
            return 0
        row = await self._db.fetchrow(
            f"SELECT COALESCE(SUM(cost), 0) AS spent FROM ({calls}) c", *p.values
        )
        return int(row["spent"]) if row else 0

    async def revenue_by_day(
        self, days: Sequence[Day], *, user_id: str | None = None
    ) -> tuple[Totals, list[DayTotals]]:
        p = Params()
        periods = [Period(start=d.start, end=d.end) for d in days]
        # One user's days come from the per-call rollups, which carry the user.
        dim = "total" if user_id is None else "call"
        calls = gathered(p, periods, rolled=[Rolled(dim)], label="i", user_id=user_id)
        found: dict[int, Totals] = {}
        if calls is not None:
            rows = await self._db.read(f"SELECT i, {SUMS} FROM ({calls}) s GROUP BY i", *p.values)
            found = {r["i"]: totals_of(r) for r in rows}
        per_day = [DayTotals(day=d, totals=found.get(i, Totals())) for i, d in enumerate(days)]
        return _sum(t.totals for t in per_day), per_day

    async def top_users(
        self, *, period: Period, limit: int
    ) -> tuple[Totals, list[UserTotals], bool]:
        p = Params()
        calls = gathered(
            p,
            [period],
            rolled=[Rolled("call", ("r.user_id",))],
            columns=[("user_id", "u.user_id")],
        )
        if calls is None:
            return Totals(), [], False
        rows = await self._db.read(
            f"WITH g AS (SELECT user_id, {SUMS} FROM ({calls}) s GROUP BY user_id) "
            f"SELECT 1 AS grp, NULL AS user_id, {TOTALS} FROM g "
            f"UNION ALL SELECT 0, user_id, {GROUPED} FROM g "
            f"ORDER BY grp DESC, cost DESC, user_id LIMIT {p(limit + 2)}",
            *p.values,
        )
        users = [UserTotals(user_id=r["user_id"], totals=totals_of(r)) for r in rows[1:]]
        return totals_of(rows[0]), users[:limit], len(users) > limit

    async def list_prices(self) -> list[PriceRow]:
        return [price(r) for r in await self._db.read("SELECT * FROM model_prices ORDER BY model")]

    async def sync_prices(
        self, prices: Sequence[PriceRow], *, actor: str, reason: str | None = None
    ) -> list[PriceChange]:
        async with self._db.transaction() as tx:
            # Read, diff and write under one lock: another process syncing the same file
            # waits, then finds the book already equal and records nothing.
            await tx.lock("gateway:price-book")
            book = [price(r) for r in await tx.fetch("SELECT * FROM model_prices")]
            changes = diff_prices(book, prices, actor=actor, reason=reason)
            now = utcnow()
            for change in changes:
                p = change.new
                if p is None:
                    await tx.execute("DELETE FROM model_prices WHERE model = $1", change.model)
                else:
                    await tx.execute(
                        UPSERT_PRICE,
                        p.model,
                        p.provider,
                        p.upstream_model,
                        p.kind,
                        p.max_output_tokens,
                        p.input,
                        p.cached_input,
                        p.output,
                        p.cache_write,
                        p.cache_write_1h,
                        p.audio_input,
                        p.audio_output,
                        tiers_json(p.tiers),
                        p.web_search,
                        now,
                    )
                for event in change.events:
                    await write_audit(tx, event)
        return changes


def _where(p: Params, user_id: str | None, period: Period) -> str:
    return p.where(
        ("u.user_id =", user_id),
        ("u.created_at >=", period.start),
        ("u.created_at <", period.end),
    )


def _filtered(p: Params, user_id: str | None, only: UsageFilter) -> str:
    return p.where(
        ("u.user_id =", user_id),
        ("u.created_at >=", only.period.start),
        ("u.created_at <", only.period.end),
        ("u.model =", only.model),
        ("u.key_id =", only.key_id),
    )


def _model_key(only: UsageFilter | None) -> tuple[str | None, str | None]:
    return (only.model, only.key_id) if only is not None else (None, None)


def _sum(totals: Iterable[Totals]) -> Totals:
    out = Totals()
    for t in totals:
        out = Totals(
            requests=out.requests + t.requests,
            prompt_tokens=out.prompt_tokens + t.prompt_tokens,
            completion_tokens=out.completion_tokens + t.completion_tokens,
            cached_tokens=out.cached_tokens + t.cached_tokens,
            reasoning_tokens=out.reasoning_tokens + t.reasoning_tokens,
            cost=out.cost + t.cost,
        )
    return out


def usage(r: Row) -> UsageRecord:
    return usage_of(r)


# -- pure helpers --------------------------------------------------------------------------


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
