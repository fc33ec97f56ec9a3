"""The audit trail (the ``Audit`` port), and the one statement every repository writes it with."""

from __future__ import annotations

import orjson

from gateway.ledger.database import Database, Row, Statements
from gateway.ledger.sql import Params
from gateway.records import AuditEvent

# details: JSON text (SQLite TEXT; PostgreSQL jsonb, which asyncpg reads and writes as text).
INSERT_AUDIT = (
    "INSERT INTO audit_log (actor, action, target, amount, reason, details, created_at)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7)"
)


async def write_audit(db: Statements, event: AuditEvent) -> None:
    """Writes ``event`` on ``db``: a transaction, to commit it with the change it describes."""
    details = None if event.details is None else orjson.dumps(event.details).decode()
    await db.execute(
        INSERT_AUDIT,
        event.actor,
        event.action,
        event.target,
        event.amount,
        event.reason,
        details,
        event.created_at,
    )


class SqlAudit:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def record_audit(self, event: AuditEvent) -> None:
        await write_audit(self._db, event)

    async def list_audit(
        self, *, target: str | None, action: str | None, limit: int, offset: int
    ) -> tuple[list[AuditEvent], bool]:
        p = Params()
        where = p.where(("target =", target), ("action =", action))
        rows = await self._db.fetch(
            f"SELECT * FROM audit_log {where} ORDER BY id DESC LIMIT {p(limit + 1)}"
            f" OFFSET {p(offset)}",
            *p.values,
        )
        return [audit_event(r) for r in rows[:limit]], len(rows) > limit


def audit_event(r: Row) -> AuditEvent:
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
