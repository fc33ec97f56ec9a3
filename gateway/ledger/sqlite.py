"""The embedded database: SQLite (stdlib ``sqlite3``) and its money statements.

One connection, used from one dedicated writer thread. A lock lets one transaction (or one
statement) at a time use it, and every write transaction is ``BEGIN IMMEDIATE``: it holds
SQLite's write lock from its first statement, so no other writer, in this process or another,
can interleave, and a read inside it is the value it writes against. Reports read on their own
short-lived read-only connection beside the writer (WAL gives them a committed snapshot).

Timestamps are stored as fixed-width UTC text (``SQLITE_TS``, so text order is time order);
statements take and return them as datetimes (notation and conversions: database.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import re
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

from gateway.ledger import sqlite_usage
from gateway.ledger.database import Row, Transaction
from gateway.ledger.schema import migrations
from gateway.ledger.sqlite_time import parse_ts, ts
from gateway.records import UsageRecord, utcnow

T = TypeVar("T")

_TIMESTAMPS = ("_at", "_since")  # the schema's timestamp columns end so (database.py)
_PARAMETER = re.compile(r"\$(\d+)(?:::\w+(?:\[\])?)?")


@functools.lru_cache(maxsize=512)
def native(sql: str) -> str:
    """A statement of the shared notation as SQLite reads it: ``$n::type`` -> ``?n``."""
    return _PARAMETER.sub(r"?\1", sql)


def adapt(args: Iterable[Any]) -> tuple[Any, ...]:
    return tuple(ts(a) if isinstance(a, datetime) else a for a in args)


def _statement(sql: str, args: Iterable[Any]) -> Callable[[sqlite3.Connection], list[Row]]:
    return lambda c: c.execute(native(sql), adapt(args)).fetchall()


def _row(cursor: sqlite3.Cursor, values: tuple[Any, ...]) -> dict[str, Any]:
    return {
        name: parse_ts(value) if isinstance(value, str) and name.endswith(_TIMESTAMPS) else value
        for (name, *_), value in zip(cursor.description, values, strict=True)
    }


class SqliteDatabase:
    def __init__(self, path: str) -> None:
        self.path = path
        self._memory = path in ("", ":memory:")
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-ledger")
        self._conn: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()  # one transaction or statement at a time on the connection

    def _run(self, fn: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        """Queues ``fn`` on the writer thread. The queue is FIFO: whatever becomes of the
        awaiting task, what it queued runs before anything queued after it."""
        return asyncio.get_running_loop().run_in_executor(self._thread, self._call, fn)

    def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        assert self._conn is not None, "ledger is not open"
        return fn(self._conn)

    async def open(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._thread, self._connect)

    def _connect(self) -> None:
        if not self._memory:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            _create_owner_only(self.path)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            conn.row_factory = _row
            for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"):
                conn.execute(f"PRAGMA {pragma}")
            conn.execute("PRAGMA busy_timeout=5000")
            _migrate(conn)
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    async def close(self) -> None:
        """Closes for good (a closed database is not reopened)."""
        if self._conn is not None:
            await self._run(lambda c: c.close())
            self._conn = None
        self._thread.shutdown(wait=True)

    async def ping(self) -> None:
        await self.fetch("SELECT 1")

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        async with self._lock:
            return await self._run(_statement(sql, args))

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        rows = await self.fetch(sql, *args)
        return rows[0] if rows else None

    async def execute(self, sql: str, *args: Any) -> None:
        await self.fetch(sql, *args)

    async def read(self, sql: str, *args: Any) -> list[Row]:
        if self._memory:  # an in-memory database has no second connection
            return await self.fetch(sql, *args)
        return await asyncio.to_thread(_read_only, self.path, native(sql), adapt(args))

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        async with self._lock:
            try:
                await self._run(lambda c: c.execute("BEGIN IMMEDIATE"))
                yield _SqliteTransaction(self._run)
                await self._run(lambda c: c.execute("COMMIT"))
            except BaseException:
                # Queued behind every statement of ours and before the lock is released: even
                # if this task was cancelled mid-way, the next user finds no transaction open.
                await self._run(_rollback)
                raise

    async def tx(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Runs ``fn(connection)`` in one write transaction, in one visit to the writer
        thread: for SQLite-only code with many statements (the usage debit, tools). On the raw
        connection, placeholders are ``?`` and timestamps go in as ``ts()`` text."""
        async with self._lock:
            return await self._run(lambda c: _atomically(c, fn))


class _Runner(Protocol):
    def __call__(self, fn: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]: ...


class _SqliteTransaction:
    def __init__(self, run: _Runner) -> None:
        self._run = run  # on the writer thread, under the lock the transaction holds

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return await self._run(_statement(sql, args))

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        rows = await self.fetch(sql, *args)
        return rows[0] if rows else None

    async def execute(self, sql: str, *args: Any) -> None:
        await self.fetch(sql, *args)

    async def lock(self, name: str) -> None:
        """BEGIN IMMEDIATE already excludes every other write transaction."""


def _create_owner_only(path: str) -> None:
    """Creates a missing database file readable by its owner only (0600, like the key files
    beside it): it holds every balance, and the hashes of keys and passwords. SQLite gives
    the -wal and -shm files it makes the database file's mode. An existing file keeps the
    mode its operator gave it."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def _migrate(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY)")
    # Read what is applied under the write lock, so two processes starting at once cannot
    # both apply the same migration.
    with _immediate(conn):
        done = {r["version"] for r in conn.execute("SELECT version FROM schema_migrations")}
        for version, sql in migrations("sqlite"):
            if version not in done:
                for statement in sql.split(";\n"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute("INSERT INTO schema_migrations VALUES (?)", (version,))


@contextlib.contextmanager
def _immediate(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _atomically(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    with _immediate(conn):
        return fn(conn)


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:  # not when BEGIN itself failed (busy) or COMMIT succeeded
        conn.execute("ROLLBACK")


def _read_only(path: str, sql: str, args: Sequence[Any]) -> list[Row]:
    uri = Path(path).resolve().as_uri() + "?mode=ro"  # as_uri escapes ?, # and % in the path
    conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
    try:
        conn.row_factory = _row
        conn.execute("PRAGMA busy_timeout=5000")
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


# -- money --------------------------------------------------------------------------------

ENTRY_COLUMNS = "user_id, kind, amount, balance_after, user_version, reference, reason, actor"
INSERT_ENTRY = (
    f"INSERT INTO ledger_entries ({ENTRY_COLUMNS}, created_at)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
)


class SqliteMoney:
    """The money statements of SQLite; each runs inside an IMMEDIATE transaction."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def lock_user(self, tx: Transaction, user_id: str) -> int | None:
        # The IMMEDIATE transaction holds the write lock already: a plain read is locked.
        row = await tx.fetchrow("SELECT balance FROM users WHERE id = $1", user_id)
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
        # Invariant: the balance and its entry change together; the entry carries the new
        # balance and the new version (one more per entry).
        moved = await tx.fetchrow(
            "UPDATE users SET balance = balance + $2, version = version + 1 WHERE id = $1"
            " RETURNING balance, version",
            user_id,
            amount,
        )
        assert moved is not None  # the user's row is locked by this transaction
        row = await tx.fetchrow(
            INSERT_ENTRY + " RETURNING *",
            user_id,
            kind,
            amount,
            moved["balance"],
            moved["version"],
            reference,
            reason,
            actor,
            utcnow(),
        )
        assert row is not None
        return row

    def reference_taken(self, error: Exception) -> bool:
        # Never: the reference is checked under the write lock, which no other post can take.
        return False

    async def write_usage(self, records: Sequence[UsageRecord]) -> list[str]:
        return await self._db.tx(lambda c: sqlite_usage.write_usage(c, records))
