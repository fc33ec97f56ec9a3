"""The alert outbox (the ``Webhooks`` port): webhook deliveries waiting, sent or given up.

Written once for both databases. Rows are written by ``write_alert`` (on a transaction, to
commit an alert with the change that caused it, or on the database itself) and taken by the
senders of every process through ``claim_due``: one statement that moves a due row's
``next_attempt_at`` to the end of a lease, so no other sender sees it due until then.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from gateway.ledger.database import Database, Row, Statements
from gateway.ledger.sql import Params
from gateway.records import Alert, WebhookDelivery, utcnow

# One row per endpoint; the same occurrence (dedup_key) written again stores nothing and
# keeps the first event id.
INSERT_DELIVERY = (
    "INSERT INTO webhook_deliveries (event_id, type, dedup_key, endpoint, endpoint_hash,"
    " payload, next_attempt_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7,"
    " $7, $7) ON CONFLICT (dedup_key, endpoint_hash) DO NOTHING"
)
# The outer WHERE repeats the subquery's: on PostgreSQL a concurrent claimer blocked on the
# same row re-checks it against the winner's update (whose lease lies in the future) and
# skips the row, so a row is never handed to two senders at once. SQLite's writes are serial.
CLAIM_DUE = (
    "UPDATE webhook_deliveries SET claim = $1, next_attempt_at = $2, updated_at = $3"
    " WHERE id IN (SELECT id FROM webhook_deliveries WHERE status = 'pending'"
    " AND next_attempt_at <= $3 ORDER BY next_attempt_at, id LIMIT $4)"
    " AND status = 'pending' AND next_attempt_at <= $3 RETURNING *"
)
# Only while the caller's claim holds: a sender overtaken after its lease ran out writes
# nothing (the row is another sender's now).
FINISH_DELIVERY = (
    "UPDATE webhook_deliveries SET status = $3, attempts = attempts + 1, claim = NULL,"
    " next_attempt_at = $4, last_status = $5, last_error = $6, updated_at = $7,"
    " delivered_at = CASE WHEN $3 = 'delivered' THEN $7::timestamptz ELSE NULL END"
    " WHERE id = $1 AND claim = $2 AND status = 'pending'"
)


async def write_alert(db: Statements, alert: Alert) -> None:
    """Writes ``alert`` on ``db``: a transaction, to commit it with the change it reports."""
    for endpoint, endpoint_hash in alert.endpoints:
        await db.execute(
            INSERT_DELIVERY,
            alert.event_id,
            alert.type,
            alert.dedup_key,
            endpoint,
            endpoint_hash,
            alert.payload,
            alert.created_at,
        )


class SqlWebhooks:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def enqueue(self, alerts: list[Alert]) -> None:
        if not alerts:
            return
        async with self._db.transaction() as tx:
            for alert in alerts:
                await write_alert(tx, alert)

    async def claim_due(self, *, limit: int, lease: float) -> list[WebhookDelivery]:
        now = utcnow()
        rows = await self._db.fetch(
            CLAIM_DUE, uuid.uuid4().hex, now + timedelta(seconds=lease), now, limit
        )
        return sorted((delivery(r) for r in rows), key=lambda d: d.id)

    async def finish_delivery(
        self,
        delivery_id: int,
        *,
        claim: str,
        status: str,
        next_attempt_at: datetime,
        http_status: int | None,
        error: str | None,
    ) -> bool:
        row = await self._db.fetchrow(
            FINISH_DELIVERY + " RETURNING id",
            delivery_id,
            claim,
            status,
            next_attempt_at,
            http_status,
            error,
            utcnow(),
        )
        return row is not None

    async def list_deliveries(
        self, *, status: str | None, type: str | None, before: int | None, limit: int
    ) -> tuple[list[WebhookDelivery], bool]:
        p = Params()
        where = p.where(("status =", status), ("type =", type), ("id <", before))
        rows = await self._db.fetch(
            f"SELECT * FROM webhook_deliveries {where} ORDER BY id DESC LIMIT {p(limit + 1)}",
            *p.values,
        )
        return [delivery(r) for r in rows[:limit]], len(rows) > limit


def delivery(r: Row) -> WebhookDelivery:
    return WebhookDelivery(
        id=int(r["id"]),
        event_id=r["event_id"],
        type=r["type"],
        dedup_key=r["dedup_key"],
        endpoint=r["endpoint"],
        endpoint_hash=r["endpoint_hash"],
        payload=r["payload"],
        status=r["status"],
        attempts=int(r["attempts"]),
        next_attempt_at=r["next_attempt_at"],
        created_at=r["created_at"],
        updated_at=r["updated_at"],
        claim=r["claim"],
        last_status=r["last_status"],
        last_error=r["last_error"],
        delivered_at=r["delivered_at"],
    )
