"""Reports on SQLite: the ``ReportsLedger`` port (gateway/ledger/reports.py).

A mixin for ``SqliteLedger`` (``class SqliteLedger(SqliteReportsMixin, ...)``).

Reads run on their own short-lived read-only connection in a worker thread, not on the
ledger's single database thread: WAL lets them read a consistent snapshot while the ledger
keeps writing, so a report over many rows never delays settlements or key lookups. (An
in-memory database has no second connection; there they run on the ledger thread.) Writes
(``sync_prices``) go through the ledger thread like every other write.

Each report is one SELECT; its total row is summed from its groups in the same statement.
SQLite has no time zones: day buckets arrive as UTC ``[start, end)`` pairs and are joined as a
VALUES table, each day one range scan of the covering index ``usage_records_time`` (0003).
Timestamps are fixed-width UTC text, so text order is time order.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from gateway.ledger.reports import AGGREGATES, GROUPED, TOTALS, diff_prices, totals_of
from gateway.ledger.schema import USAGE_COLUMNS, parse_ts, ts
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
    utcnow,
)


class SqliteReportsMixin:
    # Provided by SqliteLedger.
    path: str
    _run: Callable[..., Any]
    _tx: Callable[..., Any]

    async def _report_read(self, sql: str, params: Sequence[Any]) -> list[sqlite3.Row]:
        if self.path in ("", ":memory:"):
            return await self._run(  # type: ignore[no-any-return]
                lambda c: c.execute(sql, params).fetchall()
            )
        return await asyncio.to_thread(_read_only, self.path, sql, params)

    async def list_usage_before(
        self, user_id: str, *, cursor: Cursor | None, limit: int
    ) -> tuple[list[UsageRecord], bool]:
        after, params = "", [user_id]
        if cursor is not None:
            # Row-value comparison matches the index order (created_at DESC, request_id DESC).
            after = " AND (created_at, request_id) < (?, ?)"
            params += [ts(cursor.created_at), cursor.request_id]
        rows = await self._report_read(
            f"SELECT {USAGE_COLUMNS} FROM usage_records WHERE user_id = ?{after} "
            "ORDER BY created_at DESC, request_id DESC LIMIT ?",
            [*params, limit + 1],
        )
        return [_usage(r) for r in rows[:limit]], len(rows) > limit

    async def usage_totals(
        self, *, user_id: str | None, period: Period
    ) -> tuple[Totals, list[ModelTotals]]:
        where, params = _where(user_id, period)
        rows = await self._report_read(
            f"WITH g AS (SELECT u.provider AS provider, u.model AS model, {AGGREGATES} "
            f"FROM usage_records u {where} GROUP BY u.provider, u.model) "
            f"SELECT 1 AS grp, NULL AS provider, NULL AS model, {TOTALS} FROM g "
            f"UNION ALL SELECT 0, provider, model, {GROUPED} FROM g "
            "ORDER BY grp DESC, cost DESC, provider, model",
            params,
        )
        return totals_of(rows[0]), [
            ModelTotals(provider=r["provider"], model=r["model"], totals=totals_of(r))
            for r in rows[1:]
        ]

    async def revenue_by_day(self, days: Sequence[Day]) -> tuple[Totals, list[DayTotals]]:
        if not days:
            return Totals(), []
        values = ", ".join("(?, ?, ?)" for _ in days)
        params: list[Any] = []
        for i, d in enumerate(days):
            params += [i, ts(d.start), ts(d.end)]
        rows = await self._report_read(
            f"WITH days(i, lo, hi) AS (VALUES {values}), "
            f"g AS (SELECT d.i AS i, {AGGREGATES} FROM days d LEFT JOIN usage_records u "
            "ON u.created_at >= d.lo AND u.created_at < d.hi GROUP BY d.i) "
            f"SELECT -1 AS i, {TOTALS} FROM g UNION ALL SELECT i, {GROUPED} FROM g ORDER BY i",
            params,
        )
        return totals_of(rows[0]), [
            DayTotals(day=days[r["i"]], totals=totals_of(r)) for r in rows[1:]
        ]

    async def top_users(
        self, *, period: Period, limit: int
    ) -> tuple[Totals, list[UserTotals], bool]:
        where, params = _where(None, period)
        rows = await self._report_read(
            f"WITH g AS (SELECT u.user_id AS user_id, {AGGREGATES} FROM usage_records u "
            f"{where} GROUP BY u.user_id) "
            f"SELECT 1 AS grp, NULL AS user_id, {TOTALS} FROM g "
            f"UNION ALL SELECT 0, user_id, {GROUPED} FROM g "
            "ORDER BY grp DESC, cost DESC, user_id LIMIT ?",
            [*params, limit + 2],
        )
        users = [UserTotals(user_id=r["user_id"], totals=totals_of(r)) for r in rows[1:]]
        return totals_of(rows[0]), users[:limit], len(users) > limit

    async def list_prices(self) -> list[PriceRow]:
        rows = await self._report_read("SELECT * FROM model_prices ORDER BY model", ())
        return [_price(r) for r in rows]

    async def sync_prices(
        self, prices: Sequence[PriceRow], *, actor: str, reason: str | None = None
    ) -> list[PriceChange]:
        def run(c: sqlite3.Connection) -> list[PriceChange]:
            # Read, diff and write in one IMMEDIATE transaction: another process syncing the
            # same file waits, then finds the book already equal and records nothing.
            book = [_price(r) for r in c.execute("SELECT * FROM model_prices")]
            changes = diff_prices(book, prices, actor=actor, reason=reason)
            now = ts(utcnow())
            for change in changes:
                if change.new is None:
                    c.execute("DELETE FROM model_prices WHERE model = ?", (change.model,))
                else:
                    p = change.new
                    c.execute(
                        "INSERT OR REPLACE INTO model_prices VALUES (?,?,?,?,?,?,?,?,?)",
                        (
                            p.model,
                            p.provider,
                            p.upstream_model,
                            p.kind,
                            p.max_output_tokens,
                            p.input,
                            p.cached_input,
                            p.output,
                            now,
                        ),
                    )
                for event in change.events:
                    _insert_audit(c, event)
            return changes

        return await self._run(lambda c: self._tx(c, run))  # type: ignore[no-any-return]


def _read_only(path: str, sql: str, params: Sequence[Any]) -> list[sqlite3.Row]:
    uri = Path(path).resolve().as_uri() + "?mode=ro"  # as_uri escapes ?, # and % in the path
    conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
    try:
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout=5000")
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def _where(user_id: str | None, period: Period) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    for condition, value in (
        ("u.user_id = ?", user_id),
        ("u.created_at >= ?", period.start and ts(period.start)),
        ("u.created_at < ?", period.end and ts(period.end)),
    ):
        if value is not None:
            clauses.append(condition)
            params.append(value)
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", params


def _insert_audit(c: sqlite3.Connection, event: AuditEvent) -> None:
    c.execute(
        "INSERT INTO audit_log (actor, action, target, amount, reason, details, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            event.actor,
            event.action,
            event.target,
            event.amount,
            event.reason,
            None if event.details is None else orjson.dumps(event.details).decode(),
            ts(event.created_at),
        ),
    )


def _price(r: sqlite3.Row) -> PriceRow:
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


def _usage(r: sqlite3.Row) -> UsageRecord:
    data = dict(r)
    data["created_at"] = parse_ts(data["created_at"])
    return UsageRecord(**data)
