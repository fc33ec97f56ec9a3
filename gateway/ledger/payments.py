"""Stripe events, refund plans, billing profiles and auto top-up claims (the ``Payments`` port).

Written once for both databases. Where concurrent deliveries may race, one statement decides
(an upsert, or an UPDATE whose WHERE re-checks the row it locked); refunds of one charge are
planned under a per-charge lock. Money itself moves only through the Journal.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from gateway.ledger.base import UnknownUser
from gateway.ledger.database import Database, Row, Statements
from gateway.ledger.sql import Params
from gateway.ledger.webhooks import write_alert
from gateway.records import RETRYABLE, Alert, BillingProfile, StripeEvent, TopupClaim, utcnow

# attempts starts at 1 and every later delivery bumps it: exactly one delivery sees 1 (the
# upsert of a concurrent one waits for the first insert to commit, then updates its row).
CLAIM_EVENT = (
    "INSERT INTO stripe_events (event_id, type, status, payload, created_at, updated_at)"
    " VALUES ($1, $2, 'processing', $3, $4, $4) ON CONFLICT (event_id) DO UPDATE"
    " SET attempts = stripe_events.attempts + 1 RETURNING attempts, status"
)
# Only a retryable row changes: of concurrent deliveries the first finisher wins.
_RETRYABLE = ", ".join(f"'{status}'" for status in sorted(RETRYABLE))
FINISH_EVENT = (
    "UPDATE stripe_events SET status = $2, user_id = $3, amount = $4, currency = $5,"
    " payment_ref = $6, payment_intent = $7, detail = $8, updated_at = $9"
    f" WHERE event_id = $1 AND status IN ({_RETRYABLE})"
)
# Both upserts insert nothing for an unknown user (users are never deleted, so the check
# cannot go stale; the foreign key stays as the backstop) and then return no row.
SAVE_AUTO_TOPUP = (
    "INSERT INTO billing_profiles (user_id, auto_topup_enabled, threshold, amount, updated_at)"
    " SELECT $1, $2, $3, $4, $5 WHERE EXISTS (SELECT 1 FROM users WHERE id = $1)"
    " ON CONFLICT (user_id) DO UPDATE SET auto_topup_enabled = excluded.auto_topup_enabled,"
    " threshold = excluded.threshold, amount = excluded.amount,"
    " last_error = CASE WHEN excluded.auto_topup_enabled THEN NULL"
    " ELSE billing_profiles.last_error END, updated_at = excluded.updated_at RETURNING *"
)
SET_CUSTOMER = (
    "INSERT INTO billing_profiles (user_id, stripe_customer_id, updated_at)"
    " SELECT $1, $2, $3 WHERE EXISTS (SELECT 1 FROM users WHERE id = $1)"
    " ON CONFLICT (user_id) DO UPDATE SET stripe_customer_id ="
    " COALESCE(billing_profiles.stripe_customer_id, excluded.stripe_customer_id)"
    " RETURNING stripe_customer_id"
)
# One statement is the guard: never two PaymentIntents in flight for one user. Concurrent
# triggers (any process) queue on the row and re-check the WHERE against the winner's row.
# A stale 'pending' claim keeps its seq, so its retry reuses the idempotency key.
CLAIM_TOPUP = (
    "UPDATE billing_profiles SET"
    " trigger_seq = CASE WHEN in_flight_intent IS NULL THEN trigger_seq + 1"
    " ELSE trigger_seq END,"
    " in_flight_intent = 'pending', in_flight_since = $2, updated_at = $2"
    " WHERE user_id = $1 AND auto_topup_enabled AND amount > 0"
    " AND (in_flight_intent IS NULL OR (in_flight_intent = 'pending' AND in_flight_since < $3))"
    " RETURNING trigger_seq, amount, threshold, stripe_customer_id"
)


class SqlPayments:
    def __init__(self, db: Database) -> None:
        self._db = db

    # -- Stripe events ------------------------------------------------------------------

    async def claim_stripe_event(self, event: StripeEvent) -> str | None:
        row = await self._db.fetchrow(
            CLAIM_EVENT, event.event_id, event.type, event.payload, utcnow()
        )
        assert row is not None  # an upsert always returns its row
        return None if row["attempts"] == 1 else str(row["status"])

    async def finish_stripe_event(
        self, outcome: StripeEvent, *, alerts: Sequence[Alert] = ()
    ) -> None:
        if not alerts:
            await self._finish_event(self._db, outcome)
            return
        async with self._db.transaction() as tx:
            await self._finish_event(tx, outcome)
            for alert in alerts:
                await write_alert(tx, alert)

    @staticmethod
    async def _finish_event(db: Statements, outcome: StripeEvent) -> None:
        o = outcome
        await db.execute(
            FINISH_EVENT,
            o.event_id,
            o.status,
            o.user_id,
            o.amount,
            o.currency,
            o.payment_ref,
            o.payment_intent,
            o.detail,
            utcnow(),
        )

    async def list_stripe_events(
        self, *, status: str | None, limit: int, offset: int
    ) -> tuple[list[StripeEvent], bool]:
        p = Params()
        rows = await self._db.fetch(
            f"SELECT * FROM stripe_events {p.where(('status =', status))}"
            f" ORDER BY created_at DESC, event_id DESC LIMIT {p(limit + 1)} OFFSET {p(offset)}",
            *p.values,
        )
        return [stripe_event(r) for r in rows[:limit]], len(rows) > limit

    async def get_stripe_event(self, event_id: str) -> StripeEvent | None:
        row = await self._db.fetchrow("SELECT * FROM stripe_events WHERE event_id = $1", event_id)
        return None if row is None else stripe_event(row)

    async def find_stripe_credit(self, payment_intent: str) -> tuple[str, int] | None:
        row = await self._db.fetchrow(
            "SELECT user_id, amount FROM stripe_events WHERE payment_intent = $1"
            " AND status = 'credited' AND amount IS NOT NULL ORDER BY created_at LIMIT 1",
            payment_intent,
        )
        return (row["user_id"], row["amount"]) if row else None

    # -- refunds ------------------------------------------------------------------------

    async def plan_refund_debit(
        self, *, charge_id: str, reference: str, user_id: str, target_total: int
    ) -> int:
        async with self._db.transaction() as tx:
            # Refund levels of one charge are planned one at a time, in every process.
            await tx.lock("stripe-refund:" + charge_id)
            planned = await tx.fetchrow(
                "SELECT amount FROM stripe_refund_debits WHERE reference = $1", reference
            )
            if planned is not None:
                return int(planned["amount"])
            done = await tx.fetchrow(
                "SELECT COALESCE(SUM(amount), 0) AS amount FROM stripe_refund_debits"
                " WHERE charge_id = $1",
                charge_id,
            )
            assert done is not None  # an aggregate always returns a row
            # Invariant: per charge, SUM(amount) = the debit owed for the highest level seen.
            amount = max(0, target_total - int(done["amount"]))
            await tx.execute(
                "INSERT INTO stripe_refund_debits (reference, charge_id, user_id, amount,"
                " created_at) VALUES ($1, $2, $3, $4, $5)",
                reference,
                charge_id,
                user_id,
                amount,
                utcnow(),
            )
            return amount

    # -- billing profiles ---------------------------------------------------------------

    async def get_billing_profile(self, user_id: str) -> BillingProfile | None:
        row = await self._db.fetchrow("SELECT * FROM billing_profiles WHERE user_id = $1", user_id)
        return profile(row) if row else None

    async def save_auto_topup(
        self, user_id: str, *, enabled: bool, threshold: int, amount: int
    ) -> BillingProfile:
        row = await self._db.fetchrow(
            SAVE_AUTO_TOPUP, user_id, enabled, threshold, amount, utcnow()
        )
        if row is None:
            raise UnknownUser(user_id)
        return profile(row)

    async def set_stripe_customer(self, user_id: str, customer_id: str) -> str:
        row = await self._db.fetchrow(SET_CUSTOMER, user_id, customer_id, utcnow())
        if row is None:
            raise UnknownUser(user_id)
        return str(row["stripe_customer_id"])

    async def claim_auto_topup(self, user_id: str, *, stale_after: float) -> TopupClaim | None:
        now = utcnow()
        row = await self._db.fetchrow(
            CLAIM_TOPUP, user_id, now, now - timedelta(seconds=stale_after)
        )
        if row is None:
            return None
        return TopupClaim(
            user_id=user_id,
            seq=int(row["trigger_seq"]),
            amount=int(row["amount"]),
            threshold=int(row["threshold"]),
            stripe_customer_id=row["stripe_customer_id"],
        )

    async def set_topup_intent(self, user_id: str, *, seq: int, intent_id: str) -> None:
        # A webhook faster than Stripe's API answer may have cleared the claim already.
        await self._db.execute(
            "UPDATE billing_profiles SET in_flight_intent = $3 WHERE user_id = $1"
            " AND trigger_seq = $2 AND in_flight_intent = 'pending'",
            user_id,
            seq,
            intent_id,
        )

    async def finish_auto_topup(
        self,
        user_id: str,
        *,
        intent_id: str | None,
        seq: int | None,
        failure: str | None,
        alerts: Sequence[Alert] = (),
    ) -> None:
        if failure is None:
            # Only this trigger's marker: a late answer to an older one must not free a slot.
            await self._db.execute(
                "UPDATE billing_profiles SET in_flight_intent = NULL, in_flight_since = NULL,"
                " updated_at = $4 WHERE user_id = $1 AND (in_flight_intent = $2"
                " OR (in_flight_intent = 'pending' AND trigger_seq = $3))",
                user_id,
                intent_id,
                seq,
                utcnow(),
            )
            return
        async with self._db.transaction() as tx:
            await tx.execute(
                "UPDATE billing_profiles SET auto_topup_enabled = FALSE, in_flight_intent = NULL,"
                " in_flight_since = NULL, last_error = $2, updated_at = $3 WHERE user_id = $1",
                user_id,
                failure,
                utcnow(),
            )
            for alert in alerts:
                await write_alert(tx, alert)


def stripe_event(r: Row) -> StripeEvent:
    return StripeEvent(
        event_id=r["event_id"],
        type=r["type"],
        status=r["status"],
        payload=r["payload"],
        user_id=r["user_id"],
        amount=r["amount"],
        currency=r["currency"],
        payment_ref=r["payment_ref"],
        payment_intent=r["payment_intent"],
        detail=r["detail"],
        created_at=r["created_at"],
        updated_at=r["updated_at"],
    )


def profile(r: Row) -> BillingProfile:
    return BillingProfile(
        user_id=r["user_id"],
        stripe_customer_id=r["stripe_customer_id"],
        auto_topup_enabled=bool(r["auto_topup_enabled"]),
        threshold=r["threshold"],
        amount=r["amount"],
        in_flight_intent=r["in_flight_intent"],
        last_error=r["last_error"],
    )
