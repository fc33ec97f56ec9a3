"""Auto top-up: one off-session PaymentIntent per crossing; credit only through the webhook."""

from __future__ import annotations

from urllib.parse import parse_qs

import httpx
import pytest
import respx

from tests.billing.helpers import STRIPE, STRIPE_KEY, WEBHOOK_SECRET, deliver, event, ledger_rows
from tests.support.gateway import GatewayFactory, RunningGateway, usd
from tests.support.waiting import wait_until


def form(request: httpx.Request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(request.content.decode()).items()}


def as_user(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def call(gw: RunningGateway, key: str) -> None:
    gw.client(key).chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "hello there"}], max_tokens=10
    )


def setup_card(
    gw: RunningGateway, api: respx.MockRouter, key: str, *, threshold: str, amount: str = "20.00"
) -> respx.Route:
    """Auto top-up on, then one checkout: the customer exists and holds a card."""
    api.post(f"{STRIPE}/v1/customers").respond(200, json={"id": "cus_auto", "object": "customer"})
    api.post(f"{STRIPE}/v1/checkout/sessions").respond(
        200, json={"id": "cs_auto", "object": "checkout.session", "url": "https://x"}
    )
    cards = api.get(f"{STRIPE}/v1/payment_methods").respond(
        200,
        json={
            "object": "list",
            "url": "/v1/payment_methods",
            "has_more": False,
            "data": [{"id": "pm_card_1", "object": "payment_method"}],
        },
    )
    r = httpx.put(
        f"{gw.base_url}/me/auto-topup",
        headers=as_user(key),
        json={"enabled": True, "threshold": threshold, "amount": amount},
    )
    assert r.status_code == 200, r.text
    r = httpx.post(f"{gw.base_url}/me/checkout", headers=as_user(key), json={"amount": "5"})
    assert r.status_code == 201, r.text
    return cards


def profile(gw: RunningGateway, key: str) -> dict:
    r = httpx.get(f"{gw.base_url}/me/auto-topup", headers=as_user(key))
    assert r.status_code == 200, r.text
    return r.json()


def succeeded(uid: str, intent: str = "pi_auto_1", trigger: str = "1") -> dict:
    return {
        "id": intent,
        "object": "payment_intent",
        "amount": 2000,
        "amount_received": 2000,
        "currency": "usd",
        "status": "succeeded",
        "customer": "cus_auto",
        "metadata": {"user_id": uid, "purpose": "auto_topup", "trigger": trigger},
    }


def test_auto_topup_fires_once_on_crossing_and_credits_only_on_the_webhook(
    bgw: RunningGateway,
    stripe_api: respx.MockRouter,
) -> None:
    intents = stripe_api.post(f"{STRIPE}/v1/payment_intents").respond(
        200, json={"id": "pi_auto_1", "object": "payment_intent", "status": "processing"}
    )
    uid, key = bgw.user("10.00")
    cards = setup_card(bgw, stripe_api, key, threshold="10.00")

    call(bgw, key)  # 10.00 -> just below the threshold
    wait_until(
        lambda: (intents.call_count, profile(bgw, key)["in_flight"]),
        lambda seen: seen[0] >= 1 and seen[1],
        wanted="a PaymentIntent created and the top-up in flight",
        show=lambda seen: f"{seen[0]} PaymentIntents, in_flight={seen[1]}",
    )
    for _ in range(3):
        call(bgw, key)  # still below, but one PaymentIntent is in flight
    bgw.wait_usage(uid, 4)
    assert intents.call_count == 1

    listed = cards.calls[0].request.url.params
    assert (listed["customer"], listed["type"]) == ("cus_auto", "card")
    request = intents.calls[0].request
    sent = form(request)
    assert request.headers["Idempotency-Key"] == f"gateway-autotopup-{uid}-1"
    assert sent["amount"] == "2000"
    assert sent["currency"] == "usd"
    assert sent["customer"] == "cus_auto"
    assert sent["payment_method"] == "pm_card_1"
    assert sent["off_session"] == "true"
    assert sent["confirm"] == "true"
    assert sent["metadata[user_id]"] == uid
    assert sent["metadata[purpose]"] == "auto_topup"
    assert sent["metadata[trigger]"] == "1"

    spent = bgw.balance(uid)
    assert spent < usd("10.00")  # nothing credited by creating the PaymentIntent
    r = deliver(bgw, event("evt_auto_ok", "payment_intent.succeeded", succeeded(uid)))
    assert r.json()["status"] == "credited"
    assert bgw.balance(uid) == spent + usd("20.00")
    assert profile(bgw, key)["in_flight"] is False
    deliver(bgw, event("evt_auto_ok_again", "payment_intent.succeeded", succeeded(uid)))
    assert bgw.balance(uid) == spent + usd("20.00")

    call(bgw, key)  # well above the threshold again: no new top-up
    bgw.wait_usage(uid, 5)
    assert intents.call_count == 1


def test_declined_card_disables_auto_topup_and_is_recorded(
    bgw: RunningGateway,
    stripe_api: respx.MockRouter,
) -> None:
    intents = stripe_api.post(f"{STRIPE}/v1/payment_intents").respond(
        402,
        json={
            "error": {
                "type": "card_error",
                "code": "card_declined",
                "message": "Your card was declined.",
                "payment_intent": {"id": "pi_declined", "object": "payment_intent"},
            }
        },
    )
    uid, key = bgw.user("10.00")
    setup_card(bgw, stripe_api, key, threshold="10.00")
    call(bgw, key)
    wait_until(
        lambda: profile(bgw, key),
        lambda seen: seen["enabled"] is False,
        wanted="auto top-up disabled after the declined card",
    )
    assert intents.call_count == 1
    assert profile(bgw, key)["last_error"] == "Your card was declined."
    audit = ledger_rows(
        bgw, "SELECT action, target FROM audit_log WHERE action = ?", "autotopup.failed"
    )
    assert [(a["action"], a["target"]) for a in audit] == [("autotopup.failed", uid)]
    assert bgw.balance(uid) < usd("10.00")


def test_payment_failed_webhook_disables_auto_topup(
    bgw: RunningGateway,
    stripe_api: respx.MockRouter,
) -> None:
    uid, key = bgw.user("50.00")
    setup_card(bgw, stripe_api, key, threshold="1.00")
    failed = {
        **succeeded(uid, "pi_auto_9"),
        "status": "requires_payment_method",
        "amount_received": 0,
        "last_payment_error": {"message": "Insufficient funds."},
    }
    r = deliver(bgw, event("evt_auto_bad", "payment_intent.payment_failed", failed))
    assert r.json()["status"] == "payment_failed"
    state = profile(bgw, key)
    assert (state["enabled"], state["last_error"]) == (False, "Insufficient funds.")
    assert bgw.balance(uid) == usd("50.00")


def test_admin_sets_auto_topup_and_bad_settings_are_422(bgw: RunningGateway) -> None:
    uid, key = bgw.user("0")
    r = bgw.admin.put(
        f"/admin/users/{uid}/auto-topup",
        json={"enabled": True, "threshold": "3.00", "amount": "15.00"},
    )
    assert r.status_code == 200, r.text
    assert profile(bgw, key) | {"stripe_customer_id": None} == {
        "enabled": True,
        "threshold": "3.00",
        "amount": "15.00",
        "stripe_customer_id": None,
        "in_flight": False,
        "last_error": None,
    }
    for body in (
        {"enabled": "yes"},
        {"enabled": True, "amount": "0.10"},
        {"enabled": True, "threshold": "-1", "amount": "10"},
    ):
        r = bgw.admin.put(f"/admin/users/{uid}/auto-topup", json=body)
        assert r.status_code == 422, (body, r.text)
    assert (
        httpx.put(
            f"{bgw.base_url}/admin/users/{uid}/auto-topup",
            headers=as_user(key),
            json={"enabled": False},
        ).status_code
        == 403
    )
    assert (
        bgw.admin.put("/admin/users/nobody/auto-topup", json={"enabled": False}).status_code == 404
    )


@pytest.mark.parametrize(
    ("stripe_env", "missing"),
    [
        ({}, "STRIPE_API_KEY and STRIPE_WEBHOOK_SECRET not set"),
        ({"STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET}, "(STRIPE_API_KEY not set)"),
        ({"STRIPE_API_KEY": STRIPE_KEY}, "(STRIPE_WEBHOOK_SECRET not set)"),
    ],
)
def test_auto_topup_is_refused_without_payments_and_nothing_changes(
    gateways: GatewayFactory, stripe_env: dict[str, str], missing: str
) -> None:
    gw = gateways.start(**stripe_env)
    uid, key = gw.user("0")
    before = profile(gw, key)
    on = {"enabled": True, "threshold": "3.00", "amount": "15.00"}
    for r in (
        httpx.put(f"{gw.base_url}/me/auto-topup", headers=as_user(key), json=on),
        gw.admin.put(f"/admin/users/{uid}/auto-topup", json=on),
    ):
        assert r.status_code == 503, r.text
        error = r.json()["error"]
        assert (error["code"], error["param"]) == ("payments_not_configured", "enabled")
        assert missing in error["message"]
    assert profile(gw, key) == before
    assert before["enabled"] is False
    audit = gw.admin.get("/admin/audit", params={"user": uid}).json()["data"]
    assert "autotopup.configure" not in [e["action"] for e in audit]
    # Turning it off needs no Stripe.
    off = httpx.put(f"{gw.base_url}/me/auto-topup", headers=as_user(key), json={"enabled": False})
    assert off.status_code == 200, off.text
