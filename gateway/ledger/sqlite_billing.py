"""Billing persistence on SQLite: Stripe events, refund plans, billing profiles.

A mixin for ``SqliteLedger`` (``class SqliteLedger(SqliteBillingMixin, ...)``): it runs on the
ledger's single database thread through ``_run``/``_tx``, so each method below is one
serialised transaction, and money still moves only through ``_post``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from gateway.ledger.base import UnknownUser
from gateway.ledger.schema import parse_ts, ts
from gateway.records import BillingProfile, Entry, StripeEvent, TopupClaim, utcnow

T = TypeVar("T")


def _maybe_ts(value: str | None) -> datetime | None:
    return None if value is None else parse_ts(value)


_RETRYABLE = "('processing', 'unmatched', 'error')"


class SqliteBillingMixin:
    # Provided by SqliteLedger.
    _run: Callable[..., Any]
    _tx: Callable[..., Any]
    _post: Callable[..., Entry]

    async def _billing_tx(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._run(lambda c: self._tx(c, fn))  # type: ignore[no-any-return]

    # -- Stripe events ------------------------------------------------------------------

    async def claim_stripe_event(self, event: StripeEvent) -> str | None:
        now = ts(utcnow())

        def claim(c: sqlite3.Connection) -> str | None:
            cur = c.execute(
                "INSERT INTO stripe_events (event_id, type, status, payload, created_at,"
                " updated_at) VALUES (?, ?, 'processing', ?, ?, ?)"
                " ON CONFLICT (event_id) DO NOTHING",
                (event.event_id, event.type, event.payload, now, now),
            )
            if cur.rowcount == 1:
                return None
            row = c.execute(
                "SELECT status FROM stripe_events WHERE event_id = ?", (event.event_id,)
            ).fetchone()
            c.execute(
                "UPDATE stripe_events SET attempts = attempts + 1 WHERE event_id = ?",
                (event.event_id,),
            )
            return str(row["status"])

        return await self._billing_tx(claim)

    async def finish_stripe_event(self, outcome: StripeEvent) -> None:
        o = outcome
        # Only a retryable row changes: of concurrent deliveries the first finisher wins.
        await self._billing_tx(
            lambda c: c.execute(
                "UPDATE stripe_events SET status = ?, user_id = ?, amount = ?, currency = ?,"
                " payment_ref = ?, payment_intent = ?, detail = ?, updated_at = ?"
                f" WHERE event_id = ? AND status IN {_RETRYABLE}",
                (
                    o.status,
                    o.user_id,
                    o.amount,
                    o.currency,
                    o.payment_ref,
                    o.payment_intent,
                    o.detail,
                    ts(utcnow()),
                    o.event_id,
                ),
            )
        )

    async def list_stripe_events(
        self, *, status: str | None, limit: int, offset: int
    ) -> tuple[list[StripeEvent], bool]:
        rows = await self._run(
            lambda c: c.execute(
                "SELECT * FROM stripe_events WHERE (? IS NULL OR status = ?)"
                " ORDER BY created_at DESC, event_id DESC LIMIT ? OFFSET ?",
                (status, status, limit + 1, offset),
            ).fetchall()
        )
        return [_event(r) for r in rows[:limit]], len(rows) > limit

    async def find_stripe_credit(self, payment_intent: str) -> tuple[str, int] | None:
        rows = await self._run(
            lambda c: c.execute(
                "SELECT user_id, amount FROM stripe_events WHERE payment_intent = ?"
                " AND status = 'credited' AND amount IS NOT NULL ORDER BY created_at LIMIT 1",
                (payment_intent,),
            ).fetchall()
        )
        return (rows[0]["user_id"], rows[0]["amount"]) if rows else None

    # -- refunds ------------------------------------------------------------------------

    async def plan_refund_debit(
        self, *, charge_id: str, reference: str, user_id: str, target_total: int
    ) -> int:
        def plan(c: sqlite3.Connection) -> int:
            row = c.execute(
                "SELECT amount FROM stripe_refund_debits WHERE reference = ?", (reference,)
            ).fetchone()
            if row is not None:
                return int(row["amount"])
            done = c.execute(
                "SELECT COALESCE(SUM(amount), 0) AS s FROM stripe_refund_debits"
                " WHERE charge_id = ?",
                (charge_id,),
            ).fetchone()["s"]
            # Invariant: per charge, SUM(amount) = the debit owed for the highest level seen.
            amount = max(0, target_total - int(done))
            c.execute(
                "INSERT INTO stripe_refund_debits VALUES (?, ?, ?, ?, ?)",
                (reference, charge_id, user_id, amount, ts(utcnow())),
            )
            return amount

        return await self._billing_tx(plan)

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
        def debit(c: sqlite3.Connection) -> Entry:
            row = c.execute("SELECT balance FROM users WHERE id = ?", (user_id,)).fetchone()
            if row is None:
                raise UnknownUser(user_id)
            # Read and post in one IMMEDIATE transaction: the cap cannot go stale.
            taken = min(amount, max(int(row["balance"]), 0))
            return self._post(c, user_id, kind, -taken, reference, reason, actor)

        return await self._billing_tx(debit)

    # -- billing profiles ---------------------------------------------------------------

    async def get_billing_profile(self, user_id: str) -> BillingProfile | None:
        rows = await self._run(
            lambda c: c.execute(
                "SELECT * FROM billing_profiles WHERE user_id = ?", (user_id,)
            ).fetchall()
        )
        return _profile(rows[0]) if rows else None

    async def save_auto_topup(
        self, user_id: str, *, enabled: bool, threshold: int, amount: int
    ) -> BillingProfile:
        def save(c: sqlite3.Connection) -> BillingProfile:
            if c.execute("SELECT 1 FROM users WHERE id = ?", (user_id,)).fetchone() is None:
                raise UnknownUser(user_id)
            c.execute(
                "INSERT INTO billing_profiles (user_id, auto_topup_enabled, threshold, amount,"
                " updated_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (user_id) DO UPDATE SET"
                " auto_topup_enabled = excluded.auto_topup_enabled,"
                " threshold = excluded.threshold, amount = excluded.amount,"
                " last_error = CASE WHEN excluded.auto_topup_enabled THEN NULL"
                " ELSE last_error END, updated_at = excluded.updated_at",
                (user_id, int(enabled), threshold, amount, ts(utcnow())),
            )
            row = c.execute(
                "SELECT * FROM billing_profiles WHERE user_id = ?", (user_id,)
            ).fetchone()
            return _profile(row)

        return await self._billing_tx(save)

    async def set_stripe_customer(self, user_id: str, customer_id: str) -> str:
        def save(c: sqlite3.Connection) -> str:
            c.execute(
                "INSERT INTO billing_profiles (user_id, stripe_customer_id, updated_at)"
                " VALUES (?, ?, ?) ON CONFLICT (user_id) DO UPDATE SET stripe_customer_id ="
                " COALESCE(stripe_customer_id, excluded.stripe_customer_id)",
                (user_id, customer_id, ts(utcnow())),
            )
            row = c.execute(
                "SELECT stripe_customer_id FROM billing_profiles WHERE user_id = ?", (user_id,)
            ).fetchone()
            return str(row["stripe_customer_id"])

        return await self._billing_tx(save)

    async def claim_auto_topup(self, user_id: str, *, stale_after: float) -> TopupClaim | None:
        now = utcnow()
        stale = ts(now - timedelta(seconds=stale_after))
        # One statement is the guard: never two PaymentIntents in flight for one user. A
        # stale 'pending' claim keeps its seq, so its retry reuses the idempotency key.
        row = await self._billing_tx(
            lambda c: c.execute(
                "UPDATE billing_profiles SET"
                " trigger_seq = CASE WHEN in_flight_intent IS NULL THEN trigger_seq + 1"
                " ELSE trigger_seq END,"
                " in_flight_intent = 'pending', in_flight_since = ?, updated_at = ?"
                " WHERE user_id = ? AND auto_topup_enabled = 1 AND amount > 0"
                " AND (in_flight_intent IS NULL"
                "      OR (in_flight_intent = 'pending' AND in_flight_since < ?))"
                " RETURNING trigger_seq, amount, threshold, stripe_customer_id",
                (ts(now), ts(now), user_id, stale),
            ).fetchone()
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
        await self._billing_tx(
            lambda c: c.execute(
                "UPDATE billing_profiles SET in_flight_intent = ? WHERE user_id = ?"
                " AND trigger_seq = ? AND in_flight_intent = 'pending'",
                (intent_id, user_id, seq),
            )
        )

    async def finish_auto_topup(
        self, user_id: str, *, intent_id: str | None, seq: int | None, failure: str | None
    ) -> None:
        now = ts(utcnow())
        if failure is None:
            # Only this trigger's marker: a late answer to an older one must not free a slot.
            await self._billing_tx(
                lambda c: c.execute(
                    "UPDATE billing_profiles SET in_flight_intent = NULL, in_flight_since = NULL,"
                    " updated_at = ? WHERE user_id = ? AND (in_flight_intent = ?"
                    " OR (in_flight_intent = 'pending' AND trigger_seq = ?))",
                    (now, user_id, intent_id, seq),
                )
            )
            return
        await self._billing_tx(
            lambda c: c.execute(
                "UPDATE billing_profiles SET auto_topup_enabled = 0, in_flight_intent = NULL,"
                " in_flight_since = NULL, last_error = ?, updated_at = ? WHERE user_id = ?",
                (failure, now, user_id),
            )
        )


def _event(r: sqlite3.Row) -> StripeEvent:
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
        created_at=_maybe_ts(r["created_at"]),
        updated_at=_maybe_ts(r["updated_at"]),
    )


def _profile(r: sqlite3.Row) -> BillingProfile:
    return BillingProfile(
        user_id=r["user_id"],
        stripe_customer_id=r["stripe_customer_id"],
        auto_topup_enabled=bool(r["auto_topup_enabled"]),
        threshold=r["threshold"],
        amount=r["amount"],
        in_flight_intent=r["in_flight_intent"],
        last_error=r["last_error"],
    )
