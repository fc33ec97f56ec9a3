"""Stripe webhooks: verify the signature, then turn each event into at most one ledger entry.

Two guards, because Stripe delivers at least once, in any order, possibly concurrently:

- per event id, the ``stripe_events`` row: an id whose outcome is final is answered from
  the table and changes nothing; an id left ``processing``/``unmatched``/``error`` (a crash,
  a user created later, a database hiccup) is worked again on redelivery or replay;
- per payment, the ledger reference ``stripe:<session id>`` / ``stripe:<payment intent id>``
  (and ``stripe-refund:<charge id>:<amount_refunded>``): unique in the ledger, so two event
  types for one session, replays and racing deliveries still move money once.

A credit is the Checkout Session's pre-tax ``amount_subtotal`` (the tax is not credit), in
the configured currency only. Whatever cannot be matched to a user is answered 200 (Stripe
would otherwise retry for days) and kept as ``unmatched`` for the operator.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import orjson

from gateway.alerts import events
from gateway.billing import PURPOSE_AUTO_TOPUP, Billing, BillingConfig, cents_to_nanos, credit
from gateway.billing.autotopup import record_failure
from gateway.errors import BadRequest, Unavailable
from gateway.events import emit
from gateway.ledger.base import UnknownUser
from gateway.money import format_usd
from gateway.postings import Postings
from gateway.records import RETRYABLE, StripeEvent

log = logging.getLogger("gateway.billing")
MAX_PAYLOAD = 1024 * 1024
Result = dict[str, Any]
# One Stripe event type -> what it does to the books.
EventAction = Callable[[Billing, str, dict[str, Any]], Awaitable[Result]]


class SignatureError(BadRequest):
    code = "invalid_signature"


def verify(payload: bytes, header: str | None, config: BillingConfig) -> dict[str, Any]:
    """The event, if ``header`` is Stripe's valid, recent signature of ``payload``; else 400."""
    import stripe

    if not config.webhook_secret:
        raise Unavailable(
            "Stripe webhooks are not configured: STRIPE_WEBHOOK_SECRET is not set",
            code="payments_not_configured",
        )
    try:
        # HMAC-SHA256 of "{t}.{payload}" against every v1 signature, and t within tolerance.
        stripe.WebhookSignature.verify_header(
            payload, header, config.webhook_secret, config.tolerance
        )
    except (stripe.SignatureVerificationError, ValueError) as exc:
        raise SignatureError(f"invalid Stripe-Signature: {exc}") from exc
    return parse_event(payload)


def parse_event(payload: bytes) -> dict[str, Any]:
    try:
        event = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the event is not JSON: {exc}", code="invalid_json") from exc
    if (
        not isinstance(event, dict)
        or not isinstance(event.get("id"), str)
        or not isinstance(event.get("type"), str)
    ):
        raise BadRequest("not a Stripe event: it needs a string id and type", code="invalid_event")
    return event


async def process(
    billing: Billing, event: dict[str, Any], payload: str
) -> tuple[StripeEvent, bool]:
    """Handles a verified event once; returns (outcome, duplicate)."""
    record = StripeEvent(
        event_id=event["id"], type=event["type"], status="ignored", payload=payload
    )
    handler = EVENT_ACTIONS.get(record.type)
    if handler is None:
        return record, False  # an event type we do not use: acknowledged, not stored
    seen = await billing.ledger.payments.claim_stripe_event(record)
    if seen is not None and seen not in RETRYABLE:
        # Answered as the first time (user, amount, detail...): a redelivery or a replay of
        # a settled event reads the same as its first outcome, plus ``duplicate``.
        stored = await billing.ledger.payments.get_stripe_event(record.event_id)
        return (stored or replace(record, status=seen)), True
    data = event.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    try:
        if isinstance(obj, dict):
            result = await handler(billing, record.type, obj)
        else:
            result = _unmatched({}, "the event has no data.object")
    except Exception as exc:
        # Left retryable: Stripe's next delivery (we answer 500) works it again.
        failed = replace(record, status="error", detail=f"{type(exc).__name__}: {exc}")
        try:
            await billing.ledger.payments.finish_stripe_event(failed)
        except Exception:
            log.exception("could not record the failure of Stripe event %s", record.event_id)
        raise
    # An alert the event raised (refund shortfall) commits with the event's outcome: a crash
    # before leaves the event retryable, and its redelivery raises the same alert again.
    alerts = result.pop("alerts", ())
    outcome = replace(record, **result)
    await billing.ledger.payments.finish_stripe_event(outcome, alerts=alerts)
    level = logging.WARNING if outcome.status in ("unmatched", "refund_shortfall") else logging.INFO
    emit(
        log,
        level,
        "stripe_event",
        event_id=outcome.event_id,
        type=outcome.type,
        status=outcome.status,
        user_id=outcome.user_id,
        amount=None if outcome.amount is None else format_usd(outcome.amount),
        detail=outcome.detail,
    )
    return outcome, False


# -- handlers ------------------------------------------------------------------------------


async def _session(billing: Billing, kind: str, obj: dict[str, Any]) -> Result:
    session_id = _str(obj.get("id"))
    base: Result = {
        "user_id": _user_of(obj),
        "payment_ref": session_id,
        "payment_intent": _id_of(obj.get("payment_intent")),
        "currency": _currency(obj),
    }
    if session_id is None:
        return _unmatched(base, "the session has no id")
    if kind == "checkout.session.async_payment_failed":
        return {**base, "status": "payment_failed", "detail": "the delayed payment failed"}
    if obj.get("mode", "payment") != "payment":
        return {**base, "status": "ignored", "detail": f"mode {obj.get('mode')!r} is not ours"}
    paid = obj.get("payment_status")
    if paid == "no_payment_required":
        return {**base, "status": "ignored", "detail": "no payment was required"}
    if paid != "paid":
        # A delayed method (bank debit...): credit waits for async_payment_succeeded.
        return {**base, "status": "awaiting_payment", "detail": f"payment_status={paid!r}"}
    return await _credit(
        billing,
        base,
        cents=obj.get("amount_subtotal"),
        reference=f"stripe:{session_id}",
        reason="Stripe Checkout",
    )


async def _intent(billing: Billing, kind: str, obj: dict[str, Any]) -> Result:
    intent = _str(obj.get("id"))
    found = obj.get("metadata")
    metadata: dict[str, Any] = found if isinstance(found, dict) else {}
    base: Result = {
        "user_id": _user_of(obj),
        "payment_ref": intent,
        "payment_intent": intent,
        "currency": _currency(obj),
    }
    if metadata.get("purpose") != PURPOSE_AUTO_TOPUP:
        # Checkout's own PaymentIntents: their session events carry the credit.
        return {**base, "status": "ignored", "detail": "not an auto top-up"}
    if intent is None:
        return _unmatched(base, "the payment intent has no id")
    user = base["user_id"]
    trigger = metadata.get("trigger")
    seq = int(trigger) if isinstance(trigger, str) and trigger.isdigit() else None
    if kind == "payment_intent.payment_failed":
        error = obj.get("last_payment_error")
        reason = (error.get("message") if isinstance(error, dict) else None) or "payment failed"
        if user is not None:
            await record_failure(billing, user, intent_id=intent, seq=seq, reason=reason)
        return {**base, "status": "payment_failed", "detail": reason}
    result = await _credit(
        billing,
        base,
        cents=obj.get("amount_received"),
        reference=f"stripe:{intent}",
        reason="auto top-up",
    )
    if user is not None:
        await billing.ledger.payments.finish_auto_topup(
            user, intent_id=intent, seq=seq, failure=None
        )
        billing.forget(user)
    return result


async def _refund(billing: Billing, kind: str, obj: dict[str, Any]) -> Result:
    charge = _str(obj.get("id"))
    amount, refunded = _cents(obj.get("amount")), _cents(obj.get("amount_refunded"))
    intent = _id_of(obj.get("payment_intent"))
    base: Result = {"payment_ref": charge, "payment_intent": intent, "currency": _currency(obj)}
    if charge is None or not amount or refunded is None:
        return _unmatched(base, "the charge lacks id, amount or amount_refunded")
    if base["currency"] != billing.config.currency:
        return {**base, "status": "foreign_currency", "detail": "not a payment in our currency"}
    found = await billing.ledger.payments.find_stripe_credit(intent) if intent else None
    if found is None:
        return _unmatched(base, f"no credited payment for payment intent {intent!r}")
    user, credited = found
    # The credit was the pre-tax subtotal: a refund takes back the same share of it, rounded
    # down, so a full refund debits exactly what was credited and never more.
    target = credited * min(refunded, amount) // amount
    reference = f"stripe-refund:{charge}:{refunded}"
    owed = await billing.ledger.payments.plan_refund_debit(
        charge_id=charge, reference=reference, user_id=user, target_total=target
    )
    base["user_id"] = user
    if owed == 0:
        return {**base, "status": "refunded", "amount": 0, "detail": "nothing left to debit"}
    try:
        entry = await Postings(billing.ledger.journal, billing.store).debit_up_to(
            user,
            kind="refund",
            amount=owed,
            reference=reference,
            actor="stripe",
            reason=f"Stripe refund of {charge}",
        )
    except UnknownUser:
        return _unmatched(base, f"no user {user!r}")
    taken = -entry.amount
    if taken < owed:
        # The credit was spent already; the ledger never debits a payment below zero.
        event = events.refund_shortfall(
            user_id=user,
            charge=charge,
            owed=owed,
            debited=taken,
            reference=reference,
        )
        return {
            **base,
            "alerts": billing.alerts.address(event) if billing.alerts else (),
            "status": "refund_shortfall",
            "amount": taken,
            "detail": f"ledger entry {entry.id}; {format_usd(owed - taken)} USD refunded "
            "by Stripe could not be debited",
        }
    return {**base, "status": "refunded", "amount": taken, "detail": f"ledger entry {entry.id}"}


async def _credit(
    billing: Billing, base: Result, *, cents: object, reference: str, reason: str
) -> Result:
    user = base["user_id"]
    minor = _cents(cents)
    if user is None:
        return _unmatched(base, "no client_reference_id or metadata.user_id")
    if not minor:
        return _unmatched(base, f"no positive amount ({cents!r})")
    if base["currency"] != billing.config.currency:
        return {
            **base,
            "status": "foreign_currency",
            "detail": f"{minor} {base['currency']} minor units not credited: "
            f"only {billing.config.currency} is",
        }
    nanos = cents_to_nanos(minor)
    try:
        entry = await credit(
            billing, user, kind="topup", delta=nanos, reference=reference, reason=reason
        )
    except UnknownUser:
        return _unmatched({**base, "amount": nanos}, f"no user {user!r}")
    again = "" if entry.created else " (already credited)"
    return {
        **base,
        "status": "credited",
        "amount": nanos,
        "detail": f"ledger entry {entry.id}{again}",
    }


def _unmatched(base: Result, detail: str) -> Result:
    return {**base, "status": "unmatched", "detail": detail}


EVENT_ACTIONS: dict[str, EventAction] = {
    "checkout.session.completed": _session,
    "checkout.session.async_payment_succeeded": _session,
    "checkout.session.async_payment_failed": _session,
    "payment_intent.succeeded": _intent,
    "payment_intent.payment_failed": _intent,
    "charge.refunded": _refund,
}


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _id_of(value: object) -> str | None:
    """An expandable field: the id, or the expanded object's id."""
    return _str(value.get("id")) if isinstance(value, dict) else _str(value)


def _cents(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _currency(obj: dict[str, Any]) -> str | None:
    value = _str(obj.get("currency"))
    return value.lower() if value else None


def _user_of(obj: dict[str, Any]) -> str | None:
    ref = _str(obj.get("client_reference_id"))
    if ref is not None:
        return ref
    metadata = obj.get("metadata")
    if isinstance(metadata, dict):
        for name in ("user_id", "userId"):
            value = _str(metadata.get(name))
            if value is not None:
                return value
    return None
