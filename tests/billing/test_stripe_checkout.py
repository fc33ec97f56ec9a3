"""POST /me/checkout: the Stripe API requests the gateway makes, asserted with respx."""

from __future__ import annotations

from urllib.parse import parse_qs

import httpx
import respx

from tests.billing.helpers import STRIPE
from tests.support.gateway import GatewayFactory, RunningGateway


def form(request: httpx.Request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(request.content.decode()).items()}


def mock_checkout(api: respx.MockRouter) -> tuple[respx.Route, respx.Route]:
    customers = api.post(f"{STRIPE}/v1/customers").respond(
        200, json={"id": "cus_test_1", "object": "customer"}
    )
    sessions = api.post(f"{STRIPE}/v1/checkout/sessions").respond(
        200,
        json={
            "id": "cs_test_new",
            "object": "checkout.session",
            "url": "https://checkout.stripe.com/c/pay/cs_test_new",
        },
    )
    return customers, sessions


def checkout(gw: RunningGateway, key: str, amount: object, **headers: str) -> httpx.Response:
    return httpx.post(
        f"{gw.base_url}/me/checkout",
        json={"amount": amount},
        timeout=30,
        headers={"Authorization": f"Bearer {key}", **headers},
    )


def test_checkout_creates_customer_and_session_with_the_right_parameters(
    bgw: RunningGateway,
    stripe_api: respx.MockRouter,
) -> None:
    customers, sessions = mock_checkout(stripe_api)
    uid, key = bgw.user("0")
    r = checkout(bgw, key, "25.00", **{"Idempotency-Key": "try-1"})
    assert r.status_code == 201, r.text
    assert r.json()["url"] == "https://checkout.stripe.com/c/pay/cs_test_new"

    [customer_call] = customers.calls
    assert customer_call.request.headers["Idempotency-Key"] == f"gateway-customer-{uid}"
    assert customer_call.request.headers["Authorization"] == "Bearer sk_test_gateway_key"
    assert form(customer_call.request)["metadata[user_id]"] == uid

    [session_call] = sessions.calls
    sent = form(session_call.request)
    assert session_call.request.headers["Idempotency-Key"] == f"gateway-checkout-{uid}-try-1"
    assert sent["mode"] == "payment"
    assert sent["client_reference_id"] == uid
    assert sent["customer"] == "cus_test_1"
    assert sent["metadata[user_id]"] == uid
    assert sent["line_items[0][price_data][unit_amount]"] == "2500"
    assert sent["line_items[0][price_data][currency]"] == "usd"
    assert sent["line_items[0][quantity]"] == "1"
    assert sent["payment_intent_data[metadata][user_id]"] == uid
    assert sent["success_url"].startswith("http")
    assert sent["cancel_url"].startswith("http")
    # No auto top-up: the card is not kept.
    assert "payment_intent_data[setup_future_usage]" not in sent


def test_checkout_reuses_the_customer_and_saves_the_card_for_auto_topup(
    bgw: RunningGateway,
    stripe_api: respx.MockRouter,
) -> None:
    customers, sessions = mock_checkout(stripe_api)
    _, key = bgw.user("0")
    assert checkout(bgw, key, "10").status_code == 201
    r = httpx.put(
        f"{bgw.base_url}/me/auto-topup",
        headers={"Authorization": f"Bearer {key}"},
        json={"enabled": True, "threshold": "2.00", "amount": "20.00"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["stripe_customer_id"] == "cus_test_1"
    assert checkout(bgw, key, "10").status_code == 201
    assert customers.call_count == 1
    second = form(sessions.calls[1].request)
    assert second["customer"] == "cus_test_1"
    assert second["payment_intent_data[setup_future_usage]"] == "off_session"
    # Without a client key every checkout gets its own idempotency key.
    keys = {c.request.headers["Idempotency-Key"] for c in sessions.calls}
    assert len(keys) == 2


def test_checkout_refuses_amounts_outside_the_limits_without_calling_stripe(
    bgw: RunningGateway,
    stripe_api: respx.MockRouter,
) -> None:
    customers, sessions = mock_checkout(stripe_api)
    _, key = bgw.user("0")
    for amount in ("0.50", "500.01", "10.001", "-5", "NaN", "ten", True, None):
        r = checkout(bgw, key, amount)
        assert r.status_code == 422, (amount, r.text)
    assert customers.call_count == sessions.call_count == 0


def test_checkout_needs_a_gateway_key(bgw: RunningGateway) -> None:
    r = httpx.post(f"{bgw.base_url}/me/checkout", json={"amount": "10"})
    assert r.status_code == 401


def test_stripe_failure_is_a_502_in_openai_shape(
    bgw: RunningGateway,
    stripe_api: respx.MockRouter,
) -> None:
    stripe_api.post(f"{STRIPE}/v1/customers").respond(
        400, json={"error": {"type": "invalid_request_error", "message": "No such thing"}}
    )
    _, key = bgw.user("0")
    r = checkout(bgw, key, "10")
    assert r.status_code == 502
    assert "No such thing" in r.json()["error"]["message"]


def test_checkout_without_stripe_key_is_503(gateways: GatewayFactory) -> None:
    gw = gateways.start()
    _, key = gw.user("0")
    r = checkout(gw, key, "10")
    assert r.status_code == 503
    assert "STRIPE_API_KEY" in r.json()["error"]["message"]
