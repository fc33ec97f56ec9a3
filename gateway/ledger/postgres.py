"""The production database: PostgreSQL (asyncpg pool) and its money statements.

Every transaction runs in READ COMMITTED. Money for one user moves only while that user's row
is locked (``SELECT ... FOR UPDATE``, or the ``UPDATE`` itself), so movements of one user
serialise across processes and hosts, and ledger entry ids grow in the order the balance moved.
Where a transaction locks several users (``LOCK_USERS``, postgres_usage.py) it locks them in
id order, so two batches can never deadlock over lock order.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg

from gateway.ledger.base import UnknownUser
from gateway.ledger.database import Row, Transaction
from gateway.ledger.partitions import Months, missing_partition
from gateway.ledger.postgres_usage import LOCK_USERS, RECORDED, WRITE_USAGE, usage_batch
from gateway.ledger.schema import migrations
from gateway.records import UsageRecord

# Any fixed key will do; it only has to be the same in every process sharing the database.
_MIGRATION_LOCK = 0x6761_7465_7761_7931
# Constraint names from migrations/postgres/0001_init.sql.
_REFERENCE_KEY = "ledger_entries_reference_key"
# The detail of a key violation: 'Key (user_id)=(u1) is not present in table "users".'
_KEY_DETAIL = re.compile(r"^Key \((?:user_)?id\)=\((.*)\) ")


class PostgresDatabase:
    def __init__(self, dsn: str, *, min_size: int = 1, max_size: int = 10) -> None:
        self.dsn = dsn
        self._min_size = min_size
        self._max_size = max_size
        self._pool: asyncpg.Pool | None = None

    @property
    def _open_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("ledger is not open")
        return self._pool

    async def open(self) -> None:
        if self._pool is not None:
            return
        pool = await asyncpg.create_pool(self.dsn, min_size=self._min_size, max_size=self._max_size)
        try:
            async with pool.acquire() as conn:
                await _migrate(conn)
        except BaseException:
            await pool.close()
            raise
        self._pool = pool

    async def close(self) -> None:
        """Closes the pool; ``open`` may connect again."""
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def ping(self) -> None:
        await self._open_pool.fetchval("SELECT 1")

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return list(await self._open_pool.fetch(sql, *args))

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        row: Row | None = await self._open_pool.fetchrow(sql, *args)
        return row

    async def execute(self, sql: str, *args: Any) -> None:
        await self._open_pool.execute(sql, *args)

    async def read(self, sql: str, *args: Any) -> list[Row]:
        return await self.fetch(sql, *args)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        async with self._open_pool.acquire() as conn, conn.transaction():
            yield _PostgresTransaction(conn)

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[Any]:
        """A raw asyncpg connection of the pool, for tools (bench seeding with COPY)."""
        async with self._open_pool.acquire() as conn:
            yield conn


class _PostgresTransaction:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return list(await self._conn.fetch(sql, *args))

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        row: Row | None = await self._conn.fetchrow(sql, *args)
        return row

    async def execute(self, sql: str, *args: Any) -> None:
        await self._conn.execute(sql, *args)

    async def lock(self, name: str) -> None:
        await self._conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", name)


async def _migrate(conn: Any) -> None:
    # One transaction under a transaction-scoped advisory lock: processes starting together
    # queue here, and each one after the first finds the versions already recorded.
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            "version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for version, sql in migrations("postgres"):
            if version not in done:
                await conn.execute(sql)
                await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)


# -- money --------------------------------------------------------------------------------

MOVE = """
-- Invariant: the balance and its entry change together; the entry carries the new balance
-- and the user's new version (one more per entry), so the balance store can tell whether a
-- balance it loaded already includes this change.
WITH moved AS (
    UPDATE users SET balance = balance + $3, version = version + 1 WHERE id = $1
    RETURNING balance, version
)
INSERT INTO ledger_entries
    (user_id, kind, amount, balance_after, user_version, reference, reason, actor)
SELECT $1, $2, $3, moved.balance, moved.version, $4, $5, $6 FROM moved
RETURNING *
"""


class PostgresMoney:
    """The money statements of PostgreSQL; ``lock_user`` and ``move`` run in one transaction."""

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db
        self._partitions = Months(db)

    async def lock_user(self, tx: Transaction, user_id: str) -> int | None:
        row = await tx.fetchrow("SELECT balance FROM users WHERE id = $1 FOR UPDATE", user_id)
        return None if row is None else int(row["balance"])

    async def move(
        self,
        tx: Transaction,
        user_id: str,
        *,
        kind: str,
        amount: int,
        reference: str,
        reason: str | None,
        actor: str | None,
    ) -> Row:
        row = await tx.fetchrow(MOVE, user_id, kind, amount, reference, reason, actor)
        assert row is not None  # the user's row is locked by this transaction
        return row

    def reference_taken(self, error: Exception) -> bool:
        return (
            isinstance(error, asyncpg.UniqueViolationError)
            and error.constraint_name == _REFERENCE_KEY
        )

    async def write_usage(self, records: Sequence[UsageRecord]) -> list[str]:
        fresh: dict[str, UsageRecord] = {}
        for r in records:
            fresh.setdefault(r.request_id, r)  # within a batch the first copy wins
        if not fresh:
            return []
        await self._partitions.cover(fresh.values())
        try:
            written = await self._write(fresh)
        except asyncpg.CheckViolationError as exc:
            if not missing_partition(exc):
                raise
            # A month dropped by another process's retention, or added and dropped since we
            # looked: look again and retry once.
            self._partitions.forget()
            await self._partitions.cover(fresh.values())
            written = await self._write(fresh)
        return written

    async def _write(self, fresh: dict[str, UsageRecord]) -> list[str]:
        try:
            async with self._db.transaction() as tx:
                await tx.execute(LOCK_USERS, sorted({r.user_id for r in fresh.values()}))
                seen = {r["request_id"] for r in await tx.fetch(RECORDED, list(fresh))}
                batch = [r for r in fresh.values() if r.request_id not in seen]
                if not batch:
                    return []
                rows = await tx.fetch(WRITE_USAGE, *usage_batch(batch))
                written = {r["request_id"] for r in rows}
        except asyncpg.ForeignKeyViolationError as exc:
            match = _KEY_DETAIL.match(getattr(exc, "detail", None) or "")
            if match is None:
                raise
            raise UnknownUser(match.group(1)) from exc
        return [r for r in fresh if r in written]
