"""The alert event types and their payloads.

Every event is a JSON object like Stripe's::

    {"id": "evt_5f0c...", "object": "event", "type": "balance.low",
     "created": 1714564800, "data": {...}}

``id`` is the same on every attempt and endpoint (the receiver's dedup key); ``created`` is
Unix seconds; amounts in ``data`` are USD decimal strings, as in the API. A builder here
answers an ``AlertEvent``: the type, the data, and the ``dedup_key`` naming the occurrence
(the same occurrence reported twice is stored once).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway.money import format_usd

BALANCE_LOW = "balance.low"
BUDGET_REACHED = "budget.reached"
AUTO_TOPUP_FAILED = "auto_topup.failed"
REFUND_SHORTFALL = "refund.shortfall"
EVENT_TYPES = (BALANCE_LOW, BUDGET_REACHED, AUTO_TOPUP_FAILED, REFUND_SHORTFALL)


@dataclass(frozen=True, slots=True)
class AlertEvent:
    type: str
    dedup_key: str
    data: dict[str, Any]


def new_event_id() -> str:
    return f"evt_{uuid.uuid4().hex}"


def balance_low(
    *, user_id: str, level: str, balance: int, threshold: int, request_id: str
) -> AlertEvent:
    """A call took the user's balance below a level: ``level`` is "warning" or "critical"
    (GATEWAY_LOW_BALANCE_WARN / _CRITICAL); amounts nano-USD."""
    return AlertEvent(
        BALANCE_LOW,
        f"{BALANCE_LOW}:{user_id}:{level}:{request_id}",
        {
            "user_id": user_id,
            "level": level,
            "balance": format_usd(balance),
            "threshold": format_usd(threshold),
            "request_id": request_id,
        },
    )


def budget_reached(
    *,
    key_id: str | None,
    user_id: str,
    budget: int,
    period: str,
    period_start: datetime | None,
) -> AlertEvent:
    """A budget was reached: a call was refused because the period's spend and the calls in
    flight left no room for it. ``key_id`` names the key whose budget it is, None for the
    user's own budget over all their keys; ``period``: day | week | month | total;
    ``period_start`` the period's first instant, None for total; ``budget`` nano-USD.
    Reported once per budget and period, however often it is called."""
    start = period_start.isoformat() if period_start is not None else None
    owner = f"key:{key_id}" if key_id is not None else f"user:{user_id}"
    return AlertEvent(
        BUDGET_REACHED,
        f"{BUDGET_REACHED}:{owner}:{period}:{start}",
        {
            "key_id": key_id,
            "user_id": user_id,
            "budget": format_usd(budget),
            "period": period,
            "period_start": start,
        },
    )


def auto_topup_failed(
    *, user_id: str, reason: str, payment_intent: str | None, trigger: int | None
) -> AlertEvent:
    """An auto top-up failed (and is now off for the user). Once per trigger."""
    occurrence = trigger if trigger is not None else payment_intent or uuid.uuid4().hex
    return AlertEvent(
        AUTO_TOPUP_FAILED,
        f"{AUTO_TOPUP_FAILED}:{user_id}:{occurrence}",
        {
            "user_id": user_id,
            "reason": reason,
            "payment_intent": payment_intent,
            "trigger": trigger,
        },
    )


def refund_shortfall(
    *, user_id: str, charge: str, owed: int, debited: int, reference: str
) -> AlertEvent:
    """Stripe refunded more than the balance still held: ``owed - debited`` was refunded but
    could not be taken back (the ledger never debits a payment below zero)."""
    return AlertEvent(
        REFUND_SHORTFALL,
        f"{REFUND_SHORTFALL}:{reference}",
        {
            "user_id": user_id,
            "charge": charge,
            "refund": format_usd(owed),
            "debited": format_usd(debited),
            "shortfall": format_usd(owed - debited),
        },
    )
