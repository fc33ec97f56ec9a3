"""The embedded ledger on SQLite (stdlib ``sqlite3``).

One connection, used from one dedicated thread: SQLite serialises writers anyway, and a single
thread makes every transaction below trivially atomic with respect to the others.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import orjson

from gateway.ledger.base import DuplicateUser, InsufficientFunds, UnknownUser, check_kind, replayed
from gateway.ledger.schema import USAGE_COLUMNS, migrations, parse_ts, ts
from gateway.ledger.sqlite_billing import SqliteBillingMixin
from gateway.ledger.sqlite_reports import SqliteReportsMixin
from gateway.records import ApiKey, AuditEvent, Entry, UsageRecord, User, utcnow

T = TypeVar("T")

_INSERT_USAGE = (
    f"INSERT INTO usage_records ({USAGE_COLUMNS}) "
    f"VALUES ({', '.join('?' for _ in USAGE_COLUMNS.split(', '))})"
)


def _maybe_ts(value: str | None) -> datetime | None:
    return None if value is None else parse_ts(value)


class SqliteLedger(SqliteReportsMixin, SqliteBillingMixin):
    def __init__(self, path: str) -> None:
        self.path = path
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-ledger")
        self._conn: sqlite3.Connection | None = None

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._call, fn)

    def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        assert self._conn is not None, "ledger is not open"
        return fn(self._conn)

    async def open(self) -> None:
        def connect() -> None:
            if self.path not in ("", ":memory:"):
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=5000")
            self._conn = conn
            self._migrate(conn)

        await asyncio.get_running_loop().run_in_executor(self._pool, connect)

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY)")
        # Read what is applied under the write lock, so two processes starting at once
        # cannot both apply the same migration.
        conn.execute("BEGIN IMMEDIATE")
        try:
            done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
            for version, sql in migrations("sqlite"):
                if version in done:
                    continue
                for statement in sql.split(";\n"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute("INSERT INTO schema_migrations VALUES (?)", (version,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await asyncio.get_running_loop().run_in_executor(self._pool, conn.close)
        self._pool.shutdown(wait=True)

    async def ping(self) -> None:
        await self._run(lambda c: c.execute("SELECT 1").fetchone())

    # -- transactions -------------------------------------------------------------------

    def _tx(self, conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    async def transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Runs ``fn(conn)`` in one write transaction (for reports and admin services)."""
        return await self._run(lambda c: self._tx(c, fn))

    async def query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        return await self._run(lambda c: c.execute(sql, params).fetchall())

    # -- users and keys -----------------------------------------------------------------

    async def create_user(self, *, user_id: str, email: str | None) -> User:
        now = utcnow()

        def insert(c: sqlite3.Connection) -> User:
            try:
                c.execute(
                    "INSERT INTO users (id, email, balance, version, created_at) "
                    "VALUES (?, ?, 0, 0, ?)",
                    (user_id, email, ts(now)),
                )
            except sqlite3.IntegrityError as exc:
                raise DuplicateUser(user_id) from exc
            return User(id=user_id, email=email, balance=0, created_at=now)

        return await self._run(insert)

    async def get_user(self, user_id: str) -> User | None:
        rows = await self.query("SELECT * FROM users WHERE id = ?", (user_id,))
        return _user(rows[0]) if rows else None

    async def create_key(
        self, user_id: str, *, key_id: str, key_hash: str, prefix: str, name: str | None
    ) -> ApiKey:
        now = utcnow()

        def insert(c: sqlite3.Connection) -> ApiKey:
            if c.execute("SELECT 1 FROM users WHERE id = ?", (user_id,)).fetchone() is None:
                raise UnknownUser(user_id)
            c.execute(
                "INSERT INTO api_keys (id, user_id, key_hash, prefix, name, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (key_id, user_id, key_hash, prefix, name, ts(now)),
            )
            return ApiKey(id=key_id, user_id=user_id, prefix=prefix, name=name, created_at=now)

        return await self._run(insert)

    async def list_keys(self, user_id: str) -> list[ApiKey]:
        rows = await self.query(
            "SELECT * FROM api_keys WHERE user_id = ? ORDER BY created_at DESC, id DESC",
            (user_id,),
        )
        return [_key(r) for r in rows]

    async def revoke_key(self, key_id: str) -> ApiKey | None:
        def revoke(c: sqlite3.Connection) -> ApiKey | None:
            c.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (ts(utcnow()), key_id),
            )
            row = c.execute("SELECT * FROM api_keys WHERE id = ?", (key_id,)).fetchone()
            return _key(row) if row else None

        return await self._run(revoke)

    async def find_key(self, key_hash: str) -> tuple[ApiKey, User] | None:
        rows = await self.query(
            "SELECT k.*, u.email AS u_email, u.balance AS u_balance, u.version AS u_version, "
            "u.created_at AS u_created_at FROM api_keys k JOIN users u ON u.id = k.user_id "
            "WHERE k.key_hash = ?",
            (key_hash,),
        )
        if not rows:
            return None
        r = rows[0]
        user = User(
            id=r["user_id"],
            email=r["u_email"],
            balance=r["u_balance"],
            created_at=parse_ts(r["u_created_at"]),
            version=r["u_version"],  # type: ignore[arg-type]
        )
        return _key(r), user

    # -- money --------------------------------------------------------------------------

    async def post_entry(
        self,
        user_id: str,
        *,
        kind: str,
        amount: int,
        reference: str,
        reason: str | None = None,
        actor: str | None = None,
    ) -> Entry:
        return await self._run(
            lambda c: self._tx(
                c,
                lambda c: self._post(
                    c, user_id, kind, amount, reference, reason, actor, exact=True
                ),
            )
        )

    def _post(
        self,
        c: sqlite3.Connection,
        user_id: str,
        kind: str,
        amount: int,
        reference: str,
        reason: str | None,
        actor: str | None,
        *,
        exact: bool = False,
    ) -> Entry:
        check_kind(kind)
        existing = c.execute("SELECT * FROM ledger_entries WHERE reference = ?", (reference,))
        row = existing.fetchone()
        if row is not None:
            return replayed(_entry(row, created=False), user_id, kind, amount if exact else None)
        user = c.execute("SELECT balance FROM users WHERE id = ?", (user_id,)).fetchone()
        if user is None:
            raise UnknownUser(user_id)
        if kind != "usage" and amount < 0 and user["balance"] + amount < 0:
            raise InsufficientFunds(user_id)
        # Invariant: balance and entry change together; balance_after is the new balance.
        moved = c.execute(
            "UPDATE users SET balance = balance + ?, version = version + 1 WHERE id = ? "
            "RETURNING balance, version",
            (amount, user_id),
        ).fetchone()
        new = moved["balance"]
        now = utcnow()
        cur = c.execute(
            "INSERT INTO ledger_entries (user_id, kind, amount, balance_after, reference, reason,"
            " actor, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (user_id, kind, amount, new, reference, reason, actor, ts(now)),
        )
        return Entry(
            id=cur.lastrowid or 0,
            user_id=user_id,
            kind=kind,
            amount=amount,
            balance_after=new,
            reference=reference,
            reason=reason,
            actor=actor,
            created_at=now,
            version=moved["version"],
        )

    async def set_balance(
        self, user_id: str, *, balance: int, reference: str, reason: str | None, actor: str | None
    ) -> Entry:
        def run(c: sqlite3.Connection) -> Entry:
            row = c.execute("SELECT * FROM ledger_entries WHERE reference = ?", (reference,))
            found = row.fetchone()
            if found is not None:
                return replayed(_entry(found, created=False), user_id, "adjustment", None)
            user = c.execute("SELECT balance FROM users WHERE id = ?", (user_id,)).fetchone()
            if user is None:
                raise UnknownUser(user_id)
            # Read and write in one IMMEDIATE transaction: no settlement can slip between.
            delta = balance - user["balance"]
            return self._post(c, user_id, "adjustment", delta, reference, reason, actor)

        return await self._run(lambda c: self._tx(c, run))

    async def write_usage(self, records: Sequence[UsageRecord]) -> list[str]:
        # Set-based, in one IMMEDIATE transaction (no other writer can interleave): find the
        # rows not yet recorded, insert them, debit their users once each and write their
        # entries with running balances. Invariant: balance == sum(entries) per user, and a
        # request id is debited at most once however often its batch is replayed.
        def run(c: sqlite3.Connection) -> list[str]:
            fresh: dict[str, UsageRecord] = {}
            for r in records:
                fresh.setdefault(r.request_id, r)  # within a batch the first copy wins
            ids = list(fresh)
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                marks = ",".join("?" * len(chunk))
                for row in c.execute(
                    f"SELECT request_id FROM usage_records WHERE request_id IN ({marks})", chunk
                ):
                    del fresh[row[0]]  # a replay: already recorded and debited once
            if not fresh:
                return []
            users = sorted({r.user_id for r in fresh.values()})
            marks = ",".join("?" * len(users))
            balances = {
                row[0]: row[1]
                for row in c.execute(f"SELECT id, balance FROM users WHERE id IN ({marks})", users)
            }
            missing = [u for u in users if u not in balances]
            if missing:
                raise UnknownUser(missing[0])  # the whole batch is refused, as in PostgreSQL
            c.executemany(
                _INSERT_USAGE,
                [
                    (
                        r.request_id,
                        r.user_id,
                        r.key_id,
                        r.model,
                        r.provider,
                        r.endpoint,
                        r.prompt_tokens,
                        r.completion_tokens,
                        r.cached_tokens,
                        r.reasoning_tokens,
                        r.price_input,
                        r.price_cached_input,
                        r.price_output,
                        r.cost,
                        r.status,
                        r.usage_source,
                        r.latency_ms,
                        ts(r.created_at),
                    )
                    for r in fresh.values()
                ],
            )
            entries = []
            moves: dict[str, int] = {}
            now = ts(utcnow())
            for r in fresh.values():
                if r.cost:
                    balances[r.user_id] -= r.cost
                    moves[r.user_id] = moves.get(r.user_id, 0) + 1
                    entries.append(
                        (
                            r.user_id,
                            "usage",
                            -r.cost,
                            balances[r.user_id],
                            f"usage:{r.request_id}",
                            None,
                            None,
                            now,
                        )
                    )
            c.executemany(
                "INSERT INTO ledger_entries (user_id, kind, amount, balance_after, reference,"
                " reason, actor, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                entries,
            )
            c.executemany(
                "UPDATE users SET balance = ?, version = version + ? WHERE id = ?",
                [(balances[u], n, u) for u, n in moves.items()],
            )
            return list(fresh)

        return await self._run(lambda c: self._tx(c, run))

    async def list_usage(
        self, user_id: str, *, limit: int, offset: int
    ) -> tuple[list[UsageRecord], bool]:
        rows = await self.query(
            "SELECT * FROM usage_records WHERE user_id = ? "
            "ORDER BY created_at DESC, request_id DESC LIMIT ? OFFSET ?",
            (user_id, limit + 1, offset),
        )
        return [_usage(r) for r in rows[:limit]], len(rows) > limit

    async def list_entries(self, user_id: str) -> list[Entry]:
        rows = await self.query(
            "SELECT * FROM ledger_entries WHERE user_id = ? ORDER BY id", (user_id,)
        )
        return [_entry(r) for r in rows]

    async def entries_after(self, user_id: str, version: int) -> list[Entry]:
        # Interim: a user's version grows by one per entry, so an entry's version is its rank.
        rows = await self.query(
            """SELECT * FROM (SELECT e.*, row_number() OVER (ORDER BY id) AS v FROM ledger_entries e
                WHERE user_id = ?) AS numbered WHERE v > ? ORDER BY id""",
            (user_id, version),
        )
        return [dataclasses.replace(_entry(r), version=r["v"]) for r in rows]

    async def balance(self, user_id: str) -> tuple[int, int] | None:
        rows = await self.query("SELECT balance, version FROM users WHERE id = ?", (user_id,))
        return (rows[0]["balance"], rows[0]["version"]) if rows else None

    async def record_audit(self, event: AuditEvent) -> None:
        details = orjson.dumps(event.details).decode() if event.details is not None else None
        await self._run(
            lambda c: c.execute(
                "INSERT INTO audit_log (actor, action, target, amount, reason, details, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    event.actor,
                    event.action,
                    event.target,
                    event.amount,
                    event.reason,
                    details,
                    ts(event.created_at),
                ),
            )
        )

    async def list_audit(
        self, *, target: str | None, action: str | None, limit: int, offset: int
    ) -> tuple[list[AuditEvent], bool]:
        rows = await self.query(
            "SELECT * FROM audit_log WHERE (? IS NULL OR target = ?) AND (? IS NULL OR action = ?)"
            " ORDER BY id DESC LIMIT ? OFFSET ?",
            (target, target, action, action, limit + 1, offset),
        )
        return [_audit(r) for r in rows[:limit]], len(rows) > limit


def _audit(r: sqlite3.Row) -> AuditEvent:
    return AuditEvent(
        id=r["id"],
        actor=r["actor"],
        action=r["action"],
        target=r["target"],
        amount=r["amount"],
        reason=r["reason"],
        details=orjson.loads(r["details"]) if r["details"] else None,
        created_at=parse_ts(r["created_at"]),
    )  # type: ignore[arg-type]


def _user(r: sqlite3.Row) -> User:
    return User(
        id=r["id"],
        email=r["email"],
        balance=r["balance"],
        created_at=parse_ts(r["created_at"]),
        version=r["version"],
    )  # type: ignore[arg-type]


def _key(r: sqlite3.Row) -> ApiKey:
    return ApiKey(
        id=r["id"],
        user_id=r["user_id"],
        prefix=r["prefix"],
        name=r["name"],
        created_at=parse_ts(r["created_at"]),  # type: ignore[arg-type]
        revoked_at=_maybe_ts(r["revoked_at"]),
        expires_at=_maybe_ts(r["expires_at"]),
    )


def _entry(r: sqlite3.Row, created: bool = True) -> Entry:
    return Entry(
        id=r["id"],
        user_id=r["user_id"],
        kind=r["kind"],
        amount=r["amount"],
        balance_after=r["balance_after"],
        reference=r["reference"],
        reason=r["reason"],
        actor=r["actor"],
        created_at=parse_ts(r["created_at"]),  # type: ignore[arg-type]
        created=created,
    )


def _usage(r: sqlite3.Row) -> UsageRecord:
    data = dict(r)
    data["created_at"] = parse_ts(data["created_at"])
    return UsageRecord(**data)
