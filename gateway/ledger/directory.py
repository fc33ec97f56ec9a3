"""Users and API keys (the ``Directory`` port), written once for both databases."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, TypeVar

import orjson

from gateway.ledger.audit import write_audit
from gateway.ledger.base import DuplicateUser, UnknownUser
from gateway.ledger.database import Database, Row
from gateway.ledger.ports import Audited
from gateway.ledger.sql import Params
from gateway.records import ApiKey, Limits, User, utcnow

# ON CONFLICT DO NOTHING: a concurrent insert of the same id waits for the first to commit,
# then returns no row, so exactly one creator succeeds and the others see DuplicateUser.
INSERT_USER = (
    "INSERT INTO users (id, email, balance, version, created_at) VALUES ($1, $2, 0, 0, $3)"
    " ON CONFLICT (id) DO NOTHING RETURNING *"
)
# No row when the user does not exist (users are never deleted, so the check cannot go stale;
# the foreign key stays as the backstop). A duplicate id or hash raises the driver's error.
INSERT_KEY = (
    "INSERT INTO api_keys (id, user_id, key_hash, prefix, name, created_at, expires_at,"
    " limits, models, metadata)"
    " SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10"
    " WHERE EXISTS (SELECT 1 FROM users WHERE id = $2)"
    " RETURNING *"
)
T = TypeVar("T")
# The columns PATCH may change (values already checked by gateway.limits.parse_*).
KEY_FIELDS = ("name", "expires_at", "limits", "models", "metadata")
USER_FIELDS = ("email", "disabled", "limits", "models")
# COALESCE keeps the first revocation time: revoking twice changes nothing.
REVOKE_KEY = "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1 RETURNING *"
_LIKE_SPECIAL = re.compile(r"[\\%_]")
KEY_BY_HASH = (
    "SELECT k.*, u.email AS u_email, u.balance AS u_balance, u.version AS u_version,"
    " u.created_at AS u_created_at, u.disabled AS u_disabled, u.limits AS u_limits,"
    " u.models AS u_models FROM api_keys k JOIN users u ON u.id = k.user_id"
    " WHERE k.key_hash = $1"
)


class SqlDirectory:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create_user(
        self, *, user_id: str, email: str | None, audit: Audited[User] | None = None
    ) -> User:
        async with self._db.transaction() as tx:
            row = await tx.fetchrow(INSERT_USER, user_id, email, utcnow())
            if row is None:
                raise DuplicateUser(user_id)
            created = user(row)
            if audit is not None:
                await write_audit(tx, audit(created))
        return created

    async def get_user(self, user_id: str) -> User | None:
        row = await self._db.fetchrow("SELECT * FROM users WHERE id = $1", user_id)
        return user(row) if row else None

    async def list_users(
        self, *, query: str | None, after: tuple[datetime, str] | None, limit: int
    ) -> tuple[list[User], bool]:
        p = Params()
        where = []
        if query:
            # Case-insensitive substring of the id or the email; LIKE's wildcards in the
            # query are matched literally.
            like = p("%" + _LIKE_SPECIAL.sub(r"\\\g<0>", query.lower()) + "%")
            where.append(
                f"(lower(id) LIKE {like} ESCAPE '\\' OR lower(email) LIKE {like} ESCAPE '\\')"
            )
        if after is not None:
            where.append(f"(created_at, id) < ({p(after[0])}, {p(after[1])})")
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = await self._db.read(
            f"SELECT * FROM users {clause} ORDER BY created_at DESC, id DESC LIMIT {p(limit + 1)}",
            *p.values,
        )
        return [user(r) for r in rows[:limit]], len(rows) > limit

    async def create_key(
        self,
        user_id: str,
        *,
        key_id: str,
        key_hash: str,
        prefix: str,
        name: str | None,
        expires_at: datetime | None = None,
        limits: Limits | None = None,
        models: tuple[str, ...] | None = None,
        metadata: dict[str, Any] | None = None,
        audit: Audited[ApiKey] | None = None,
    ) -> ApiKey:
        async with self._db.transaction() as tx:
            row = await tx.fetchrow(
                INSERT_KEY,
                key_id,
                user_id,
                key_hash,
                prefix,
                name,
                utcnow(),
                expires_at,
                encode_limits(limits),
                _json(list(models) if models is not None else None),
                _json(metadata),
            )
            if row is None:
                raise UnknownUser(user_id)
            created = key(row)
            if audit is not None:
                await write_audit(tx, audit(created))
        return created

    async def list_keys(self, user_id: str) -> list[ApiKey]:
        rows = await self._db.fetch(
            "SELECT * FROM api_keys WHERE user_id = $1 ORDER BY created_at DESC, id DESC", user_id
        )
        return [key(r) for r in rows]

    async def revoke_key(
        self, key_id: str, *, audit: Audited[ApiKey] | None = None
    ) -> ApiKey | None:
        now = utcnow()
        async with self._db.transaction() as tx:
            row = await tx.fetchrow(REVOKE_KEY, key_id, now)
            if row is None:
                return None
            revoked = key(row)
            if audit is not None and revoked.revoked_at == now:  # revoked by this call
                await write_audit(tx, audit(revoked))
        return revoked

    async def get_key(self, key_id: str) -> ApiKey | None:
        row = await self._db.fetchrow("SELECT * FROM api_keys WHERE id = $1", key_id)
        return key(row) if row else None

    async def update_key(
        self, key_id: str, changes: dict[str, Any], *, audit: Audited[ApiKey] | None = None
    ) -> ApiKey | None:
        return await self._update("api_keys", KEY_FIELDS, key_id, changes, key, audit)

    async def update_user(
        self, user_id: str, changes: dict[str, Any], *, audit: Audited[User] | None = None
    ) -> User | None:
        return await self._update("users", USER_FIELDS, user_id, changes, user, audit)

    async def _update(
        self,
        table: str,
        fields: tuple[str, ...],
        row_id: str,
        changes: dict[str, Any],
        read: Any,
        audit: Audited[T] | None,
    ) -> T | None:
        names = [name for name in fields if name in changes]
        values = [_column(name, changes[name]) for name in names]
        sets = ", ".join(f"{name} = ${i}" for i, name in enumerate(names, start=2)) or "id = id"
        async with self._db.transaction() as tx:
            row = await tx.fetchrow(
                f"UPDATE {table} SET {sets} WHERE id = $1 RETURNING *", row_id, *values
            )
            if row is None:
                return None
            changed: T = read(row)
            if audit is not None:
                await write_audit(tx, audit(changed))
        return changed

    async def rotate_key(
        self,
        key_id: str,
        *,
        new_id: str,
        key_hash: str,
        prefix: str,
        old_expires_at: datetime,
        audit: Audited[ApiKey] | None = None,
    ) -> tuple[ApiKey, ApiKey] | None:
        """A new key with the settings of ``key_id``; the old one expires at
        ``old_expires_at`` (or keeps an earlier expiry) and names its successor. None: no
        such key, or it is revoked."""
        async with self._db.transaction() as tx:
            row = await tx.fetchrow(
                "SELECT * FROM api_keys WHERE id = $1 AND revoked_at IS NULL", key_id
            )
            if row is None:
                return None
            old = key(row)
            created = await tx.fetchrow(
                INSERT_KEY,
                new_id,
                old.user_id,
                key_hash,
                prefix,
                old.name,
                utcnow(),
                old.expires_at,
                row["limits"],
                row["models"],
                row["metadata"],
            )
            assert created is not None
            until = min(old_expires_at, old.expires_at) if old.expires_at else old_expires_at
            updated = await tx.fetchrow(
                "UPDATE api_keys SET expires_at = $2, rotated_to = $3 WHERE id = $1 RETURNING *",
                key_id,
                until,
                new_id,
            )
            assert updated is not None
            fresh = key(created)
            if audit is not None:
                await write_audit(tx, audit(fresh))
        return key(updated), fresh

    async def find_key(self, key_hash: str) -> tuple[ApiKey, User] | None:
        row = await self._db.fetchrow(KEY_BY_HASH, key_hash)
        if row is None:
            return None
        owner = User(
            id=row["user_id"],
            email=row["u_email"],
            balance=row["u_balance"],
            created_at=row["u_created_at"],
            version=row["u_version"],
            disabled=bool(row["u_disabled"]),
            limits=decode_limits(row["u_limits"]),
            models=_models(row["u_models"]),
        )
        return key(row), owner


def user(r: Row) -> User:
    return User(
        id=r["id"],
        email=r["email"],
        balance=r["balance"],
        created_at=r["created_at"],
        version=r["version"],
        disabled=bool(r["disabled"]),
        limits=decode_limits(r["limits"]),
        models=_models(r["models"]),
    )


def key(r: Row) -> ApiKey:
    return ApiKey(
        id=r["id"],
        user_id=r["user_id"],
        prefix=r["prefix"],
        name=r["name"],
        created_at=r["created_at"],
        revoked_at=r["revoked_at"],
        expires_at=r["expires_at"],
        limits=decode_limits(r["limits"]),
        models=_models(r["models"]),
        metadata=orjson.loads(r["metadata"]) if r["metadata"] else None,
        rotated_to=r["rotated_to"],
    )


def encode_limits(limits: Limits | None) -> str | None:
    """Limits as stored: JSON with the budget in nano-USD; None (NULL) when there are none."""
    if limits is None or limits.empty:
        return None
    return orjson.dumps(
        {
            "budget": limits.budget,
            "period": limits.period,
            "tz": limits.tz,
            "rpm": limits.rpm,
            "tpm": limits.tpm,
            "max_concurrent": limits.max_concurrent,
        }
    ).decode()


def decode_limits(text: str | None) -> Limits | None:
    if not text:
        return None
    d = orjson.loads(text)
    return Limits(
        budget=d.get("budget"),
        period=d.get("period", "total"),
        tz=d.get("tz", "UTC"),
        rpm=d.get("rpm"),
        tpm=d.get("tpm"),
        max_concurrent=d.get("max_concurrent"),
    )


def _json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def _models(text: str | None) -> tuple[str, ...] | None:
    return tuple(orjson.loads(text)) if text else None


def _column(name: str, value: Any) -> Any:
    if name == "limits":
        return encode_limits(value)
    if name == "models":
        return _json(list(value) if value is not None else None)
    if name == "metadata":
        return _json(value)
    return value
