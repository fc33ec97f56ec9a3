"""Reports on PostgreSQL: the ``ReportsLedger`` port (gateway/ledger/reports.py).

A mixin for ``PostgresLedger`` (``class PostgresLedger(PostgresReportsMixin, ...)``) running its
SQL through the ledger's public ``pool``. Each report is one statement whose total row is
summed from its groups, so both come from one snapshot and one scan. Day buckets arrive as UTC
``[start, end)`` pairs computed with zoneinfo (the same instants SQLite groups by) and are
joined through ``unnest``: each day is one range scan of ``usage_records_time`` (0003).
``sum(bigint)`` is ``numeric`` here, so no total can overflow; it reaches Python as an exact
``Decimal`` and becomes ``int``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg
import orjson

from gateway.ledger.reports import AGGREGATES, GROUPED, TOTALS, diff_prices, totals_of
from gateway.ledger.schema import USAGE_COLUMNS
from gateway.records import (
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

# Serialises price-book syncs of processes loading the same file at once: the first records
# the change, the others find the book already equal. Any fixed key shared by all processes.
_PRICE_BOOK_LOCK = 0x6777_7072_6963_6573


class PostgresReportsMixin:
    # Provided by PostgresLedger.
    pool: asyncpg.Pool

    async def list_usage_before(
        self, user_id: str, *, cursor: Cursor | None, limit: int
    ) -> tuple[list[UsageRecord], bool]:
        if cursor is None:
            rows = await self.pool.fetch(
                f"SELECT {USAGE_COLUMNS} FROM usage_records WHERE user_id = $1 "
                "ORDER BY created_at DESC, request_id DESC LIMIT $2",
                user_id, limit + 1,
            )  # fmt: skip
        else:
            # Row-value comparison matches the index order (created_at DESC, request_id DESC).
            rows = await self.pool.fetch(
                f"SELECT {USAGE_COLUMNS} FROM usage_records WHERE user_id = $1 "
                "AND (created_at, request_id) < ($2, $3) "
                "ORDER BY created_at DESC, request_id DESC LIMIT $4",
                user_id, cursor.created_at, cursor.request_id, limit + 1,
            )  # fmt: skip
        return [UsageRecord(**dict(r)) for r in rows[:limit]], len(rows) > limit

    async def usage_totals(
        self, *, user_id: str | None, period: Period
    ) -> tuple[Totals, list[ModelTotals]]:
        where, args = _where(user_id, period)
        rows = await self.pool.fetch(
            f"WITH g AS (SELECT u.provider AS provider, u.model AS model, {AGGREGATES} "
            f"FROM usage_records u {where} GROUP BY u.provider, u.model) "
            f"SELECT 1 AS grp, NULL AS provider, NULL AS model, {TOTALS} FROM g "
            f"UNION ALL SELECT 0, provider, model, {GROUPED} FROM g "
            "ORDER BY grp DESC, cost DESC, provider, model",
            *args,
        )
        return totals_of(rows[0]), [
            ModelTotals(provider=r["provider"], model=r["model"], totals=totals_of(r))
            for r in rows[1:]
        ]

    async def revenue_by_day(self, days: Sequence[Day]) -> tuple[Totals, list[DayTotals]]:
        if not days:
            return Totals(), []
        rows = await self.pool.fetch(
            "WITH days AS (SELECT * FROM unnest($1::int[], $2::timestamptz[], $3::timestamptz[])"
            " AS d(i, lo, hi)), "
            f"g AS (SELECT d.i AS i, {AGGREGATES} FROM days d LEFT JOIN usage_records u "
            "ON u.created_at >= d.lo AND u.created_at < d.hi GROUP BY d.i) "
            f"SELECT -1 AS i, {TOTALS} FROM g UNION ALL SELECT i, {GROUPED} FROM g ORDER BY i",
            list(range(len(days))), [d.start for d in days], [d.end for d in days],
        )  # fmt: skip
        return totals_of(rows[0]), [
            DayTotals(day=days[r["i"]], totals=totals_of(r)) for r in rows[1:]
        ]

    async def top_users(
        self, *, period: Period, limit: int
    ) -> tuple[Totals, list[UserTotals], bool]:
        where, args = _where(None, period)
        rows = await self.pool.fetch(
            f"WITH g AS (SELECT u.user_id AS user_id, {AGGREGATES} FROM usage_records u "
            f"{where} GROUP BY u.user_id) "
            f"SELECT 1 AS grp, NULL AS user_id, {TOTALS} FROM g "
            f"UNION ALL SELECT 0, user_id, {GROUPED} FROM g "
            f"ORDER BY grp DESC, cost DESC, user_id LIMIT ${len(args) + 1}",
            *args, limit + 2,
        )  # fmt: skip
        users = [UserTotals(user_id=r["user_id"], totals=totals_of(r)) for r in rows[1:]]
        return totals_of(rows[0]), users[:limit], len(users) > limit

    async def list_prices(self) -> list[PriceRow]:
        rows = await self.pool.fetch("SELECT * FROM model_prices ORDER BY model")
        return [_price(r) for r in rows]

    async def sync_prices(
        self, prices: Sequence[PriceRow], *, actor: str, reason: str | None = None
    ) -> list[PriceChange]:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _PRICE_BOOK_LOCK)
            book = [_price(r) for r in await conn.fetch("SELECT * FROM model_prices")]
            changes = diff_prices(book, prices, actor=actor, reason=reason)
            for change in changes:
                if change.new is None:
                    await conn.execute("DELETE FROM model_prices WHERE model = $1", change.model)
                else:
                    p = change.new
                    await conn.execute(
                        "INSERT INTO model_prices (model, provider, upstream_model, kind, "
                        "max_output_tokens, price_input, price_cached_input, price_output, "
                        "updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now()) "
                        "ON CONFLICT (model) DO UPDATE SET provider = EXCLUDED.provider, "
                        "upstream_model = EXCLUDED.upstream_model, kind = EXCLUDED.kind, "
                        "max_output_tokens = EXCLUDED.max_output_tokens, "
                        "price_input = EXCLUDED.price_input, "
                        "price_cached_input = EXCLUDED.price_cached_input, "
                        "price_output = EXCLUDED.price_output, updated_at = now()",
                        p.model, p.provider, p.upstream_model, p.kind, p.max_output_tokens,
                        p.input, p.cached_input, p.output,
                    )  # fmt: skip
                for e in change.events:
                    await conn.execute(
                        "INSERT INTO audit_log (actor, action, target, amount, reason, details,"
                        " created_at) VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7)",
                        e.actor, e.action, e.target, e.amount, e.reason,
                        None if e.details is None else orjson.dumps(e.details).decode(),
                        e.created_at,
                    )  # fmt: skip
            return changes


def _where(user_id: str | None, period: Period) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []
    for condition, value in (
        ("u.user_id = ", user_id),
        ("u.created_at >= ", period.start),
        ("u.created_at < ", period.end),
    ):
        if value is not None:
            args.append(value)
            clauses.append(f"{condition}${len(args)}")
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", args


def _price(r: asyncpg.Record) -> PriceRow:
    return PriceRow(
        model=r["model"],
        provider=r["provider"],
        upstream_model=r["upstream_model"],
        kind=r["kind"],
        max_output_tokens=r["max_output_tokens"],
        input=r["price_input"],
        cached_input=r["price_cached_input"],
        output=r["price_output"],
    )
