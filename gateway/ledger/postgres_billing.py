"""Billing persistence on PostgreSQL: Stripe events, refund plans, billing profiles.

A mixin for ``PostgresLedger`` (``class PostgresLedger(PostgresBillingMixin)``) running its
SQL through the ledger's public ``pool``. Money still moves only through the ledger's own
``post_entry``/``_move`` (user row locked), so every invariant of the ledger holds here too.
Statements run in READ COMMITTED; where two deliveries may race, one statement decides.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import asyncpg

from gateway.ledger.base import UnknownUser
from gateway.records import BillingProfile, Entry, StripeEvent, TopupClaim, utcnow

_RETRYABLE = "('processing', 'unmatched', 'error')"


class PostgresBillingMixin:
    # Provided by PostgresLedger.
    pool: asyncpg.Pool
    _move: Callable[..., Any]

    # -- Stripe events ------------------------------------------------------------------

    async def claim_stripe_event(self, event: StripeEvent) -> str | None:
        # ON CONFLICT waits for a concurrent inserter of the same id to commit, then counts
        # the attempt on its row: exactly one delivery sees the event as new.
        row = await self.pool.fetchrow(
            "INSERT INTO stripe_events AS e (event_id, type, status, payload)"
            " VALUES ($1, $2, 'processing', $3)"
            " ON CONFLICT (event_id) DO UPDATE SET attempts = e.attempts + 1"
            " RETURNING (xmax = 0) AS fresh, status",
            event.event_id, event.type, event.payload,
        )  # fmt: skip
        assert row is not None
        return None if row["fresh"] else str(row["status"])

    async def finish_stripe_event(self, outcome: StripeEvent) -> None:
        o = outcome
        # Only a retryable row changes: of concurrent deliveries the first finisher wins.
        await self.pool.execute(
            "UPDATE stripe_events SET status = $2, user_id = $3, amount = $4, currency = $5,"
            " payment_ref = $6, payment_intent = $7, detail = $8, updated_at = now()"
            f" WHERE event_id = $1 AND status IN {_RETRYABLE}",
            o.event_id, o.status, o.user_id, o.amount, o.currency, o.payment_ref,
            o.payment_intent, o.detail,
        )  # fmt: skip

    async def list_stripe_events(
        self, *, status: str | None, limit: int, offset: int
    ) -> tuple[list[StripeEvent], bool]:
        if status is None:
            rows = await self.pool.fetch(
                "SELECT * FROM stripe_events ORDER BY created_at DESC, event_id DESC"
                " LIMIT $1 OFFSET $2",
                limit + 1,
                offset,
            )
        else:
            rows = await self.pool.fetch(
                "SELECT * FROM stripe_events WHERE status = $1"
                " ORDER BY created_at DESC, event_id DESC LIMIT $2 OFFSET $3",
                status,
                limit + 1,
                offset,
            )
        return [_event(r) for r in rows[:limit]], len(rows) > limit

    async def find_stripe_credit(self, payment_intent: str) -> tuple[str, int] | None:
        row = await self.pool.fetchrow(
            "SELECT user_id, amount FROM stripe_events WHERE payment_intent = $1"
            " AND status = 'credited' AND amount IS NOT NULL ORDER BY created_at LIMIT 1",
            payment_intent,
        )
        return (row["user_id"], row["amount"]) if row else None

    # -- refunds ------------------------------------------------------------------------

    async def plan_refund_debit(
        self, *, charge_id: str, reference: str, user_id: str, target_total: int
    ) -> int:
        async with self.pool.acquire() as conn, conn.transaction():
            # Refund levels of one charge are planned one at a time, in every process.
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                "stripe-refund:" + charge_id,
            )
            planned = await conn.fetchval(
                "SELECT amount FROM stripe_refund_debits WHERE reference = $1", reference
            )
            if planned is not None:
                return int(planned)
            done = await conn.fetchval(
                "SELECT COALESCE(SUM(amount), 0) FROM stripe_refund_debits WHERE charge_id = $1",
                charge_id,
            )
            # Invariant: per charge, SUM(amount) = the debit owed for the highest level seen.
            amount = max(0, target_total - int(done))
            await conn.execute(
                "INSERT INTO stripe_refund_debits (reference, charge_id, user_id, amount)"
                " VALUES ($1, $2, $3, $4)",
                reference,
                charge_id,
                user_id,
                amount,
            )
            return amount

    async def debit_up_to(
        self,
        user_id: str,
        *,
        kind: str,
        amount: int,
        reference: str,
        reason: str | None,
        actor: str | None,
    ) -> Entry:
        # _move computes the amount from the balance read under the user's row lock.
        entry: Entry = await self._move(
            user_id,
            kind,
            lambda balance: -min(amount, max(balance, 0)),
            reference,
            reason,
            actor,
        )
        return entry

    # -- billing profiles ---------------------------------------------------------------

    async def get_billing_profile(self, user_id: str) -> BillingProfile | None:
        row = await self.pool.fetchrow("SELECT * FROM billing_profiles WHERE user_id = $1", user_id)
        return _profile(row) if row else None

    async def save_auto_topup(
        self, user_id: str, *, enabled: bool, threshold: int, amount: int
    ) -> BillingProfile:
        try:
            row = await self.pool.fetchrow(
                "INSERT INTO billing_profiles AS p (user_id, auto_topup_enabled, threshold,"
                " amount) VALUES ($1, $2, $3, $4) ON CONFLICT (user_id) DO UPDATE SET"
                " auto_topup_enabled = EXCLUDED.auto_topup_enabled,"
                " threshold = EXCLUDED.threshold, amount = EXCLUDED.amount,"
                " last_error = CASE WHEN EXCLUDED.auto_topup_enabled THEN NULL"
                " ELSE p.last_error END, updated_at = now() RETURNING *",
                user_id, enabled, threshold, amount,
            )  # fmt: skip
        except asyncpg.ForeignKeyViolationError as exc:
            raise UnknownUser(user_id) from exc
        assert row is not None
        return _profile(row)

    async def set_stripe_customer(self, user_id: str, customer_id: str) -> str:
        try:
            value = await self.pool.fetchval(
                "INSERT INTO billing_profiles AS p (user_id, stripe_customer_id)"
                " VALUES ($1, $2) ON CONFLICT (user_id) DO UPDATE SET stripe_customer_id ="
                " COALESCE(p.stripe_customer_id, EXCLUDED.stripe_customer_id)"
                " RETURNING stripe_customer_id",
                user_id, customer_id,
            )  # fmt: skip
        except asyncpg.ForeignKeyViolationError as exc:
            raise UnknownUser(user_id) from exc
        return str(value)

    async def claim_auto_topup(self, user_id: str, *, stale_after: float) -> TopupClaim | None:
        # One statement is the guard: the row lock of the UPDATE makes concurrent triggers
        # (any process) re-check the WHERE against the winner's row, so only one passes.
        row = await self.pool.fetchrow(
            "UPDATE billing_profiles SET"
            " trigger_seq = CASE WHEN in_flight_intent IS NULL THEN trigger_seq + 1"
            " ELSE trigger_seq END,"
            " in_flight_intent = 'pending', in_flight_since = now(), updated_at = now()"
            " WHERE user_id = $1 AND auto_topup_enabled AND amount > 0"
            " AND (in_flight_intent IS NULL"
            "      OR (in_flight_intent = 'pending' AND in_flight_since < $2))"
            " RETURNING trigger_seq, amount, threshold, stripe_customer_id",
            user_id, utcnow() - timedelta(seconds=stale_after),
        )  # fmt: skip
        if row is None:
            return None
        return TopupClaim(
            user_id=user_id,
            seq=int(row["trigger_seq"]),
            amount=row["amount"],
            threshold=row["threshold"],
            stripe_customer_id=row["stripe_customer_id"],
        )

    async def set_topup_intent(self, user_id: str, *, seq: int, intent_id: str) -> None:
        # A webhook faster than Stripe's API answer may have cleared the claim already.
        await self.pool.execute(
            "UPDATE billing_profiles SET in_flight_intent = $3 WHERE user_id = $1"
            " AND trigger_seq = $2 AND in_flight_intent = 'pending'",
            user_id,
            seq,
            intent_id,
        )

    async def finish_auto_topup(
        self, user_id: str, *, intent_id: str | None, seq: int | None, failure: str | None
    ) -> None:
        if failure is None:
            # Only this trigger's marker: a late answer to an older one must not free a slot.
            await self.pool.execute(
                "UPDATE billing_profiles SET in_flight_intent = NULL, in_flight_since = NULL,"
                " updated_at = now() WHERE user_id = $1 AND (in_flight_intent = $2"
                " OR (in_flight_intent = 'pending' AND trigger_seq = $3))",
                user_id,
                intent_id,
                seq,
            )
            return
        await self.pool.execute(
            "UPDATE billing_profiles SET auto_topup_enabled = false, in_flight_intent = NULL,"
            " in_flight_since = NULL, last_error = $2, updated_at = now() WHERE user_id = $1",
            user_id,
            failure,
        )


def _event(r: asyncpg.Record) -> StripeEvent:
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


def _profile(r: asyncpg.Record) -> BillingProfile:
    return BillingProfile(
        user_id=r["user_id"],
        stripe_customer_id=r["stripe_customer_id"],
        auto_topup_enabled=r["auto_topup_enabled"],
        threshold=r["threshold"],
        amount=r["amount"],
        in_flight_intent=r["in_flight_intent"],
        last_error=r["last_error"],
    )
