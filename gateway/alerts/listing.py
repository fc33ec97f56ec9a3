"""``GET /admin/webhooks/deliveries`` and ``gateway webhooks deliveries``: the outbox, newest
first. Filters ``status`` (pending | delivered | failed) and ``type`` (an event type);
``limit`` (1..500, default 50); ``cursor``: the ``next_cursor`` of the previous page."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from gateway.alerts.events import EVENT_TYPES
from gateway.errors import BadRequest
from gateway.ledger.base import Ledger
from gateway.records import WebhookDelivery
from gateway.reports import Params, int_param

STATUSES = ("pending", "delivered", "failed")


async def deliveries(ledger: Ledger, params: Params) -> dict[str, Any]:
    limit = int_param(params, "limit", 50, 1, 500)
    status = _choice(params, "status", STATUSES)
    type_ = _choice(params, "type", EVENT_TYPES)
    raw = params.get("cursor") or ""
    if raw and not raw.isdigit():
        raise BadRequest(
            "cursor: not a cursor this API returned", param="cursor", code="invalid_cursor"
        )
    rows, more = await ledger.webhooks.list_deliveries(
        status=status, type=type_, before=int(raw) if raw else None, limit=limit
    )
    return {
        "data": [delivery_view(d) for d in rows],
        "has_more": more,
        "next_cursor": str(rows[-1].id) if more and rows else None,
    }


def delivery_view(d: WebhookDelivery) -> dict[str, Any]:
    """The row and the event as sent; ``next_attempt_at`` only while it is pending."""
    return {
        "id": d.id,
        "event_id": d.event_id,
        "type": d.type,
        "endpoint": d.endpoint,
        "status": d.status,
        "attempts": d.attempts,
        "next_attempt_at": _iso(d.next_attempt_at) if d.status == "pending" else None,
        "last_status": d.last_status,
        "last_error": d.last_error,
        "created_at": _iso(d.created_at),
        "delivered_at": _iso(d.delivered_at),
        "event": orjson.loads(d.payload),
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _choice(params: Params, name: str, choices: tuple[str, ...]) -> str | None:
    value = params.get(name) or None
    if value is not None and value not in choices:
        raise BadRequest(
            f"{name} must be one of {', '.join(choices)}", param=name, code="invalid_parameter"
        )
    return value
