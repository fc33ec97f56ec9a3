"""Browser sessions of the web pages (the ``Sessions`` port of ports.py), for both databases.

A row is keyed by the SHA-256 of the cookie's token, so the table alone signs nobody in.
Expired rows are never answered; they are deleted whenever a new session starts, which keeps
the table to the sessions alive plus those expired since the last sign-in.
"""

from __future__ import annotations

from gateway.ledger.database import Database, Row
from gateway.records import WebSession, utcnow

INSERT = (
    "INSERT INTO web_sessions (token_hash, user_id, csrf_token, created_at, expires_at)"
    " VALUES ($1, $2, $3, $4, $5)"
)


class SqlSessions:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create_session(self, session: WebSession) -> None:
        async with self._db.transaction() as tx:
            await tx.execute("DELETE FROM web_sessions WHERE expires_at <= $1", utcnow())
            await tx.execute(
                INSERT,
                session.token_hash,
                session.user_id,
                session.csrf_token,
                session.created_at,
                session.expires_at,
            )

    async def get_session(self, token_hash: str) -> WebSession | None:
        row = await self._db.fetchrow(
            "SELECT * FROM web_sessions WHERE token_hash = $1 AND expires_at > $2",
            token_hash,
            utcnow(),
        )
        return None if row is None else _session(row)

    async def end_session(self, token_hash: str) -> bool:
        row = await self._db.fetchrow(
            "DELETE FROM web_sessions WHERE token_hash = $1 RETURNING token_hash", token_hash
        )
        return row is not None

    async def end_sessions_of(self, user_id: str, *, except_token_hash: str | None = None) -> int:
        rows = await self._db.fetch(
            "DELETE FROM web_sessions WHERE user_id = $1 AND token_hash <> $2 RETURNING token_hash",
            user_id,
            except_token_hash or "",
        )
        return len(rows)

    async def end_operator_sessions(self) -> int:
        rows = await self._db.fetch(
            "DELETE FROM web_sessions WHERE user_id IS NULL RETURNING token_hash"
        )
        return len(rows)


def _session(r: Row) -> WebSession:
    return WebSession(
        token_hash=r["token_hash"],
        user_id=r["user_id"],
        csrf_token=r["csrf_token"],
        created_at=r["created_at"],
        expires_at=r["expires_at"],
    )
