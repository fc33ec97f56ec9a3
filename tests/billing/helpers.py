"""Signed Stripe events, Stripe-shaped objects and ledger look-ups (SQLite or PostgreSQL) for
the billing tests."""

from __future__ import annotations

import asyncio
import itertools
import re
import sqlite3
import time
from typing import Any

import asyncpg
import httpx
import orjson
import stripe

from tests.support.gateway import RunningGateway

WEBHOOK_SECRET = "whsec_test_gateway_secret"
STRIPE_KEY = "sk_test_gateway_key"
STRIPE = "https://api.stripe.com"

# -- building and sending events -----------------------------------------------------------


def signature(payload: str, *, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> str:
    return stripe.WebhookSignature.generate_signature_header(payload, secret, timestamp)


def deliver(
    gw: RunningGateway,
    event: dict[str, Any],
    *,
    secret: str = WEBHOOK_SECRET,
    timestamp: int | None = None,
) -> httpx.Response:
    payload = orjson.dumps(event).decode()
    return httpx.post(
        f"{gw.base_url}/webhooks/stripe",
        content=payload,
        timeout=30,
        headers={
            "Stripe-Signature": signature(payload, secret=secret, timestamp=timestamp),
            "Content-Type": "application/json",
        },
    )


def event(event_id: str, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": event_id,
        "object": "event",
        "type": kind,
        "api_version": "2024-06-20",
        "created": int(time.time()),
        "livemode": False,
        "data": {"object": obj},
    }


def session(
    user_id: str | None,
    *,
    session_id: str = "cs_test_1",
    subtotal: int = 1000,
    total: int | None = None,
    currency: str = "usd",
    paid: str = "paid",
    intent: str = "pi_checkout_1",
    **extra: Any,
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "id": session_id,
        "object": "checkout.session",
        "mode": "payment",
        "client_reference_id": user_id,
        "amount_subtotal": subtotal,
        "amount_total": subtotal if total is None else total,
        "currency": currency,
        "payment_status": paid,
        "payment_intent": intent,
        "metadata": {},
    }
    obj.update(extra)
    return obj


def ledger_rows(gw: RunningGateway, sql: str, *params: Any) -> list[dict[str, Any]]:
    """Rows of a read-only query on the gateway's own database, SQLite or PostgreSQL. Write
    ``?`` placeholders; they become ``$1``, ``$2``... on PostgreSQL."""
    url = gw.settings.database_url
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(f"file:{url.removeprefix('sqlite:///')}?mode=ro", uri=True)
        conn.row_factory = sqlite3.Row
        try:
            return [dict(row) for row in conn.execute(sql, params).fetchall()]
        finally:
            conn.close()
    numbers = itertools.count(1)
    numbered = re.sub(r"\?", lambda _: f"${next(numbers)}", sql)

    async def fetch() -> list[dict[str, Any]]:
        conn = await asyncpg.connect(url)
        try:
            return [dict(row) for row in await conn.fetch(numbered, *params)]
        finally:
            await conn.close()

    return asyncio.run(fetch())


def entries(gw: RunningGateway, user_id: str) -> list[dict[str, Any]]:
    return ledger_rows(gw, "SELECT * FROM ledger_entries WHERE user_id = ? ORDER BY id", user_id)


def assert_balance_is_sum_of_entries(gw: RunningGateway, user_id: str) -> None:
    rows = entries(gw, user_id)
    stored = ledger_rows(gw, "SELECT balance FROM users WHERE id = ?", user_id)[0]["balance"]
    assert stored == sum(r["amount"] for r in rows)
