"""The ``Logins`` port (logins.py) over either database (statement notation: database.py)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from gateway.ledger.audit import write_audit
from gateway.ledger.base import (
    DuplicateEmail,
    DuplicateUser,
    InviteRefused,
    LinkRefused,
    UnknownUser,
)
from gateway.ledger.database import Database, Row
from gateway.ledger.directory import INSERT_USER
from gateway.ledger.directory import user as user_of
from gateway.ledger.ports import Audited
from gateway.records import Invite, Login, LoginLink, User, utcnow

# No row: the address (or the user) has a login already; the unique keys decide, so two
# concurrent sign-ups with one address cannot both succeed.
INSERT_LOGIN = (
    "INSERT INTO portal_logins (user_id, email, email_key, password_hash, welcome_credit,"
    " created_at, password_changed_at) VALUES ($1, $2, $3, $4, $5, $6, $6)"
    " ON CONFLICT DO NOTHING RETURNING *"
)
# The invitation is taken by the first transaction to update its row; a concurrent one finds
# used_at set (PostgreSQL re-checks the WHERE after the first commits) and gets no row.
USE_INVITE = (
    "UPDATE portal_invites SET used_at = $2, used_by = $3 WHERE token_hash = $1"
    " AND used_at IS NULL AND (expires_at IS NULL OR expires_at > $2)"
    " AND (email_key IS NULL OR email_key = $4) RETURNING id"
)
# The link is taken by the first transaction to update its row (as USE_INVITE).
USE_LINK = (
    "UPDATE portal_login_links SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL"
    " AND expires_at > $2 RETURNING user_id"
)
# A login set through a link keeps what sign-up fixed (created_at, welcome_credit); no row:
# another user's login has the address.
PUT_LOGIN = (
    "INSERT INTO portal_logins (user_id, email, email_key, password_hash, welcome_credit,"
    " created_at, password_changed_at) VALUES ($1, $2, $3, $4, $5, $6, $7)"
    " ON CONFLICT DO NOTHING RETURNING *"
)
LOCK_UNTIL = (
    "INSERT INTO login_lockouts (scope, lock_ends_at) VALUES ($1, $2) ON CONFLICT (scope)"
    " DO UPDATE SET lock_ends_at = CASE WHEN login_lockouts.lock_ends_at > excluded.lock_ends_at"
    " THEN login_lockouts.lock_ends_at ELSE excluded.lock_ends_at END"
)


class SqlLogins:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create_account(
        self,
        *,
        user_id: str,
        email: str,
        email_key: str,
        password_hash: str,
        welcome_credit: int,
        invite_hash: str | None = None,
        audit: Audited[Login] | None = None,
    ) -> tuple[User, Login]:
        now = utcnow()
        async with self._db.transaction() as tx:
            row = await tx.fetchrow(INSERT_USER, user_id, email, now)
            if row is None:
                raise DuplicateUser(user_id)
            created = user_of(row)
            if invite_hash is not None:
                used = await tx.fetchrow(USE_INVITE, invite_hash, now, user_id, email_key)
                if used is None:
                    raise InviteRefused("this invitation is unknown, used, expired or not yours")
            login_row = await tx.fetchrow(
                INSERT_LOGIN, user_id, email, email_key, password_hash, welcome_credit, now
            )
            if login_row is None:
                raise DuplicateEmail(email)
            login = login_of(login_row)
            if audit is not None:
                await write_audit(tx, audit(login))
        return created, login

    async def add_login(
        self, user_id: str, *, email: str, email_key: str, password_hash: str
    ) -> Login:
        async with self._db.transaction() as tx:
            if await tx.fetchrow("SELECT id FROM users WHERE id = $1", user_id) is None:
                raise UnknownUser(user_id)
            row = await tx.fetchrow(
                INSERT_LOGIN, user_id, email, email_key, password_hash, 0, utcnow()
            )
            if row is None:
                raise DuplicateEmail(email)
        return login_of(row)

    async def find_login(self, email_key: str) -> Login | None:
        row = await self._db.fetchrow("SELECT * FROM portal_logins WHERE email_key = $1", email_key)
        return login_of(row) if row else None

    async def get_login(self, user_id: str) -> Login | None:
        row = await self._db.fetchrow("SELECT * FROM portal_logins WHERE user_id = $1", user_id)
        return login_of(row) if row else None

    async def set_password(
        self, user_id: str, *, password_hash: str, expected_hash: str, changed: bool
    ) -> bool:
        moved = ", password_changed_at = $4" if changed else ""
        args = [user_id, password_hash, expected_hash] + ([utcnow()] if changed else [])
        row = await self._db.fetchrow(
            f"UPDATE portal_logins SET password_hash = $2{moved}"
            " WHERE user_id = $1 AND password_hash = $3 RETURNING user_id",
            *args,
        )
        return row is not None

    async def create_invite(
        self,
        *,
        invite_id: str,
        token_hash: str,
        email: str | None,
        email_key: str | None,
        created_by: str,
        expires_at: datetime | None,
        audit: Audited[Invite] | None = None,
    ) -> Invite:
        async with self._db.transaction() as tx:
            row = await tx.fetchrow(
                "INSERT INTO portal_invites (id, token_hash, email, email_key, created_by,"
                " created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *",
                invite_id,
                token_hash,
                email,
                email_key,
                created_by,
                utcnow(),
                expires_at,
            )
            assert row is not None
            invite = invite_of(row)
            if audit is not None:
                await write_audit(tx, audit(invite))
        return invite

    async def list_invites(self, *, limit: int, offset: int) -> tuple[list[Invite], bool]:
        rows = await self._db.fetch(
            "SELECT * FROM portal_invites ORDER BY created_at DESC, id DESC LIMIT $1 OFFSET $2",
            limit + 1,
            offset,
        )
        return [invite_of(r) for r in rows[:limit]], len(rows) > limit

    async def create_login_link(
        self,
        *,
        link_id: str,
        token_hash: str,
        user_id: str,
        created_by: str,
        expires_at: datetime,
        audit: Audited[LoginLink] | None = None,
    ) -> LoginLink:
        now = utcnow()
        async with self._db.transaction() as tx:
            if await tx.fetchrow("SELECT id FROM users WHERE id = $1", user_id) is None:
                raise UnknownUser(user_id)
            await tx.execute(
                "UPDATE portal_login_links SET used_at = $2 WHERE user_id = $1 AND used_at IS NULL",
                user_id,
                now,
            )
            row = await tx.fetchrow(
                "INSERT INTO portal_login_links (id, token_hash, user_id, created_by, created_at,"
                " expires_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
                link_id,
                token_hash,
                user_id,
                created_by,
                now,
                expires_at,
            )
            assert row is not None
            link = link_of(row)
            if audit is not None:
                await write_audit(tx, audit(link))
        return link

    async def find_login_link(self, token_hash: str, *, now: datetime) -> LoginLink | None:
        row = await self._db.fetchrow(
            "SELECT * FROM portal_login_links WHERE token_hash = $1 AND used_at IS NULL"
            " AND expires_at > $2",
            token_hash,
            now,
        )
        return link_of(row) if row else None

    async def use_login_link(
        self,
        token_hash: str,
        *,
        email: str,
        email_key: str,
        password_hash: str,
        audit: Audited[Login] | None = None,
    ) -> Login:
        now = utcnow()
        async with self._db.transaction() as tx:
            used = await tx.fetchrow(USE_LINK, token_hash, now)
            if used is None:
                raise LinkRefused("this login link is unknown, used, replaced or expired")
            user_id = used["user_id"]
            old = await tx.fetchrow(
                "DELETE FROM portal_logins WHERE user_id = $1 RETURNING *", user_id
            )
            row = await tx.fetchrow(
                PUT_LOGIN,
                user_id,
                email,
                email_key,
                password_hash,
                int(old["welcome_credit"]) if old else 0,
                old["created_at"] if old else now,
                now,
            )
            if row is None:  # rolls the link and the old login back
                raise DuplicateEmail(email)
            login = login_of(row)
            if audit is not None:
                await write_audit(tx, audit(login))
        return login

    async def count_failure(self, scope: str, *, at: datetime, since: datetime) -> int:
        async with self._db.transaction() as tx:
            await tx.lock(f"throttle:{scope}")
            await tx.execute(
                "DELETE FROM login_failures WHERE scope = $1 AND created_at < $2", scope, since
            )
            await tx.execute(
                "INSERT INTO login_failures (scope, created_at) VALUES ($1, $2)", scope, at
            )
            row = await tx.fetchrow(
                "SELECT count(*) AS n FROM login_failures WHERE scope = $1 AND created_at >= $2",
                scope,
                since,
            )
        assert row is not None
        return int(row["n"])

    async def lock(self, scope: str, *, until: datetime) -> None:
        await self._db.execute(LOCK_UNTIL, scope, until)

    async def lock_ends(self, scopes: Sequence[str], *, now: datetime) -> datetime | None:
        if not scopes:
            return None
        marks = ", ".join(f"${i}" for i in range(2, len(scopes) + 2))
        rows = await self._db.fetch(
            f"SELECT lock_ends_at FROM login_lockouts WHERE scope IN ({marks})"
            " AND lock_ends_at > $1",
            now,
            *scopes,
        )
        ends: list[datetime] = [r["lock_ends_at"] for r in rows]
        return max(ends, default=None)

    async def clear_failures(self, scope: str) -> None:
        async with self._db.transaction() as tx:
            await tx.execute("DELETE FROM login_failures WHERE scope = $1", scope)
            await tx.execute("DELETE FROM login_lockouts WHERE scope = $1", scope)


def login_of(r: Row) -> Login:
    return Login(
        user_id=r["user_id"],
        email=r["email"],
        password_hash=r["password_hash"],
        created_at=r["created_at"],
        password_changed_at=r["password_changed_at"],
        welcome_credit=int(r["welcome_credit"]),
    )


def link_of(r: Row) -> LoginLink:
    return LoginLink(
        id=r["id"],
        user_id=r["user_id"],
        created_by=r["created_by"],
        created_at=r["created_at"],
        expires_at=r["expires_at"],
        used_at=r["used_at"],
    )


def invite_of(r: Row) -> Invite:
    return Invite(
        id=r["id"],
        email=r["email"],
        created_by=r["created_by"],
        created_at=r["created_at"],
        expires_at=r["expires_at"],
        used_at=r["used_at"],
        used_by=r["used_by"],
    )
