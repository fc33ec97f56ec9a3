"""The production ledger on PostgreSQL (asyncpg).

Every transaction runs in READ COMMITTED. Money for one user moves only while that user's row
is locked (``SELECT ... FOR UPDATE``, or the ``UPDATE`` itself), so movements of one user
serialise across processes and hosts, and ledger entry ids grow in the order the balance moved.
Where one statement locks several users (``write_usage``) it locks them in id order, so two
batches can never deadlock over lock order.

``pool`` is public: modules that add reports or billing queries run their SQL through it.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import asyncpg
import orjson
from asyncpg.pool import PoolConnectionProxy

from gateway.ledger.base import DuplicateUser, InsufficientFunds, UnknownUser, check_kind, replayed
from gateway.ledger.postgres_billing import PostgresBillingMixin
from gateway.ledger.postgres_reports import PostgresReportsMixin
from gateway.ledger.postgres_sql import MOVE, WRITE_USAGE
from gateway.ledger.schema import USAGE_COLUMNS, migrations
from gateway.records import ApiKey, AuditEvent, Entry, UsageRecord, User

# Any fixed key will do; it only has to be the same in every process sharing the database.
_MIGRATION_LOCK = 0x6761_7465_7761_7931

# Constraint names from migrations/postgres/0001_init.sql.
_USER_PK = "users_pkey"
_USER_FKS = frozenset({"api_keys_user_fk", "usage_records_user_fk"})
_REFERENCE_KEY = "ledger_entries_reference_key"
# The detail of a key violation: 'Key (user_id)=(u1) is not present in table "users".'
_KEY_DETAIL = re.compile(r"^Key \((?:user_)?id\)=\((.*)\) ")


class PostgresLedger(PostgresReportsMixin, PostgresBillingMixin):
    def __init__(self, dsn: str, *, min_size: int = 1, max_size: int = 10) -> None:
        self.dsn = dsn
        self._min_size = min_size
        self._max_size = max_size
        self._pool: asyncpg.Pool | None = None

    @property
    def pool(self) -> asyncpg.Pool:
        """The connection pool; raises when the ledger is not open."""
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
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def ping(self) -> None:
        await self.pool.fetchval("SELECT 1")

    # -- users and keys -----------------------------------------------------------------

    async def create_user(self, *, user_id: str, email: str | None) -> User:
        with _translated(user_id):
            row = await self.pool.fetchrow(
                "INSERT INTO users (id, email) VALUES ($1, $2) RETURNING *", user_id, email
            )
        assert row is not None
        return _user(row)

    async def get_user(self, user_id: str) -> User | None:
        row = await self.pool.fetchrow("SELECT * FROM users WHERE id = $1", user_id)
        return _user(row) if row else None

    async def create_key(
        self, user_id: str, *, key_id: str, key_hash: str, prefix: str, name: str | None
    ) -> ApiKey:
        with _translated(user_id):
            row = await self.pool.fetchrow(
                "INSERT INTO api_keys (id, user_id, key_hash, prefix, name) "
                "VALUES ($1, $2, $3, $4, $5) RETURNING *",
                key_id, user_id, key_hash, prefix, name,
            )  # fmt: skip
        assert row is not None
        return _key(row)

    async def list_keys(self, user_id: str) -> list[ApiKey]:
        rows = await self.pool.fetch(
            "SELECT * FROM api_keys WHERE user_id = $1 ORDER BY created_at DESC, id DESC",
            user_id,
        )
        return [_key(r) for r in rows]

    async def revoke_key(self, key_id: str) -> ApiKey | None:
        # COALESCE keeps the first revocation time: revoking twice changes nothing.
        row = await self.pool.fetchrow(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, now()) WHERE id = $1 "
            "RETURNING *",
            key_id,
        )
        return _key(row) if row else None

    async def find_key(self, key_hash: str) -> tuple[ApiKey, User] | None:
        row = await self.pool.fetchrow(
            "SELECT k.*, u.email AS u_email, u.balance AS u_balance, u.version AS u_version, "
            "u.created_at AS u_created_at FROM api_keys k JOIN users u ON u.id = k.user_id "
            "WHERE k.key_hash = $1",
            key_hash,
        )
        if row is None:
            return None
        user = User(
            id=row["user_id"],
            email=row["u_email"],
            balance=row["u_balance"],
            created_at=row["u_created_at"],
            version=row["u_version"],
        )
        return _key(row), user

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
        return await self._move(
            user_id, kind, lambda _balance: amount, reference, reason, actor, exact=amount
        )

    async def set_balance(
        self, user_id: str, *, balance: int, reference: str, reason: str | None, actor: str | None
    ) -> Entry:
        # The delta is computed from the balance read under the row lock, so no settlement
        # can land between reading and writing it.
        return await self._move(
            user_id, "adjustment", lambda current: balance - current, reference, reason, actor
        )

    async def _move(
        self,
        user_id: str,
        kind: str,
        amount_for: Callable[[int], int],
        reference: str,
        reason: str | None,
        actor: str | None,
        *,
        exact: int | None = None,
    ) -> Entry:
        """``exact``: the amount a replay of ``reference`` must match (None where the amount
        depends on the balance)."""
        check_kind(kind)
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                locked = await conn.fetchrow(
                    "SELECT balance FROM users WHERE id = $1 FOR UPDATE", user_id
                )
                # Looked up after the lock: READ COMMITTED takes a fresh snapshot per
                # statement, so a post of this reference that committed while we waited
                # is seen here.
                existing = await _entry_by_reference(conn, reference)
                if existing is not None:
                    return replayed(existing, user_id, kind, exact)
                if locked is None:
                    raise UnknownUser(user_id)
                amount = amount_for(locked["balance"])
                if kind != "usage" and amount < 0 and locked["balance"] + amount < 0:
                    raise InsufficientFunds(user_id)
                row = await conn.fetchrow(MOVE, user_id, kind, amount, reference, reason, actor)
                assert row is not None
                return _entry(row)
        except asyncpg.UniqueViolationError as exc:
            # The same reference committed meanwhile for another user (whose lock we do not
            # hold): our transaction rolled back, the first entry stands.
            if exc.constraint_name != _REFERENCE_KEY:
                raise
            async with self.pool.acquire() as conn:
                existing = await _entry_by_reference(conn, reference)
            if existing is None:
                raise
            return replayed(existing, user_id, kind, exact)

    async def write_usage(self, records: Sequence[UsageRecord]) -> list[str]:
        if not records:
            return []
        columns = list(zip(*(_usage_values(r) for r in records), strict=True))
        with _translated():
            rows = await self.pool.fetch(WRITE_USAGE, *columns)
        first_seen: dict[str, int] = {}
        for position, record in enumerate(records):
            first_seen.setdefault(record.request_id, position)
        return sorted((r["request_id"] for r in rows), key=first_seen.__getitem__)

    async def list_usage(
        self, user_id: str, *, limit: int, offset: int
    ) -> tuple[list[UsageRecord], bool]:
        rows = await self.pool.fetch(
            f"SELECT {USAGE_COLUMNS} FROM usage_records WHERE user_id = $1 "
            "ORDER BY created_at DESC, request_id DESC LIMIT $2 OFFSET $3",
            user_id, limit + 1, offset,
        )  # fmt: skip
        return [UsageRecord(**dict(r)) for r in rows[:limit]], len(rows) > limit

    async def list_entries(self, user_id: str) -> list[Entry]:
        rows = await self.pool.fetch(
            "SELECT * FROM ledger_entries WHERE user_id = $1 ORDER BY id", user_id
        )
        return [_entry(r) for r in rows]

    async def entries_after(self, user_id: str, version: int) -> list[Entry]:
        # Interim: a user's version grows by one per entry, so an entry's version is its rank.
        rows = await self.pool.fetch(
            """SELECT * FROM (SELECT e.*, row_number() OVER (ORDER BY id) AS v FROM ledger_entries e
                WHERE user_id = $1) AS numbered WHERE v > $2 ORDER BY id""",
            user_id,
            version,
        )
        return [dataclasses.replace(_entry(r), version=r["v"]) for r in rows]

    async def balance(self, user_id: str) -> tuple[int, int] | None:
        row = await self.pool.fetchrow("SELECT balance, version FROM users WHERE id = $1", user_id)
        return (row["balance"], row["version"]) if row else None

    # -- audit --------------------------------------------------------------------------

    async def record_audit(self, event: AuditEvent) -> None:
        details = orjson.dumps(event.details).decode() if event.details is not None else None
        await self.pool.execute(
            "INSERT INTO audit_log (actor, action, target, amount, reason, details, created_at) "
            "VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7)",
            event.actor, event.action, event.target, event.amount, event.reason, details,
            event.created_at,
        )  # fmt: skip

    async def list_audit(
        self, *, target: str | None, action: str | None, limit: int, offset: int
    ) -> tuple[list[AuditEvent], bool]:
        # Only the filters given reach the SQL, so each can use its own index.
        where: list[str] = []
        args: list[Any] = []
        for column, value in (("target", target), ("action", action)):
            if value is not None:
                args.append(value)
                where.append(f"{column} = ${len(args)}")
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        rows = await self.pool.fetch(
            "SELECT id, actor, action, target, amount, reason, details::text AS details, "
            f"created_at FROM audit_log {clause}"
            f"ORDER BY id DESC LIMIT ${len(args) + 1} OFFSET ${len(args) + 2}",
            *args, limit + 1, offset,
        )  # fmt: skip
        return [_audit(r) for r in rows[:limit]], len(rows) > limit


async def _migrate(conn: PoolConnectionProxy) -> None:
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


@contextmanager
def _translated(user_id: str | None = None) -> Iterator[None]:
    try:
        yield
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name == _USER_PK:
            raise DuplicateUser(user_id or _key_value(exc)) from exc
        raise
    except asyncpg.ForeignKeyViolationError as exc:
        if exc.constraint_name in _USER_FKS:
            raise UnknownUser(user_id or _key_value(exc)) from exc
        raise


def _key_value(exc: asyncpg.PostgresError) -> str:
    match = _KEY_DETAIL.match(getattr(exc, "detail", None) or "")
    return match.group(1) if match else str(exc)


async def _entry_by_reference(conn: PoolConnectionProxy, reference: str) -> Entry | None:
    row = await conn.fetchrow("SELECT * FROM ledger_entries WHERE reference = $1", reference)
    return _entry(row, created=False) if row else None


def _usage_values(r: UsageRecord) -> tuple[Any, ...]:
    return (
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
        r.created_at,
    )


def _user(r: asyncpg.Record) -> User:
    return User(
        id=r["id"],
        email=r["email"],
        balance=r["balance"],
        created_at=r["created_at"],
        version=r["version"],
    )


def _key(r: asyncpg.Record) -> ApiKey:
    return ApiKey(
        id=r["id"],
        user_id=r["user_id"],
        prefix=r["prefix"],
        name=r["name"],
        created_at=r["created_at"],
        revoked_at=r["revoked_at"],
        expires_at=r["expires_at"],
    )


def _entry(r: asyncpg.Record, created: bool = True) -> Entry:
    return Entry(
        id=r["id"],
        user_id=r["user_id"],
        kind=r["kind"],
        amount=r["amount"],
        balance_after=r["balance_after"],
        reference=r["reference"],
        reason=r["reason"],
        actor=r["actor"],
        created_at=r["created_at"],
        created=created,
        version=r.get("user_version"),
    )


def _audit(r: asyncpg.Record) -> AuditEvent:
    return AuditEvent(
        id=r["id"],
        actor=r["actor"],
        action=r["action"],
        target=r["target"],
        amount=r["amount"],
        reason=r["reason"],
        details=orjson.loads(r["details"]) if r["details"] else None,
        created_at=r["created_at"],
    )
