"""SQLite's side of the usage retention: its rows are not partitioned, so old ones are
deleted, a chunk per write transaction, so settlements keep landing in between."""

from __future__ import annotations

import sqlite3
from datetime import datetime

from gateway.ledger.sqlite import SqliteDatabase
from gateway.ledger.sqlite_time import ts

CHUNK = 5000


class SqliteUsageStorage:
    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def prepare(self, now: datetime) -> list[str]:
        return []  # one table for every month

    async def months_before(self, month: datetime) -> list[str]:
        rows = await self._db.fetch(
            "SELECT DISTINCT substr(created_at, 1, 7) AS month FROM usage_records"
            " WHERE created_at < $1 ORDER BY month",
            month,
        )
        return [r["month"] for r in rows]

    async def drop_before(self, month: datetime) -> list[str]:
        months = await self.months_before(month)
        horizon = ts(month)
        while await self._db.tx(lambda c: _delete_chunk(c, horizon)):
            pass
        return months


def _delete_chunk(c: sqlite3.Connection, horizon: str) -> int:
    return c.execute(
        "DELETE FROM usage_records WHERE rowid IN"
        " (SELECT rowid FROM usage_records WHERE created_at < ? LIMIT ?)",
        (horizon, CHUNK),
    ).rowcount
