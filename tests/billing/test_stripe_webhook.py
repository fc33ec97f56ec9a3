"""POST /webhooks/stripe: money that arrived is credited exactly once; nothing else is."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from tests.billing.helpers import (
    assert_balance_is_sum_of_entries,
    deliver,
    entries,
    event,
    ledger_rows,
    session,
)
from tests.support.gateway import RunningGateway, usd


def topups(gw: RunningGateway, user_id: str) -> list[int]:
    return [r["amount"] for r in entries(gw, user_id) if r["kind"] == "topup"]


def events(gw: RunningGateway, status: str | None = None) -> list[dict]:
    r = gw.admin.get("/admin/billing/events", params={"status": status} if status else {})
    assert r.status_code == 200, r.text
    return r.json()["data"]


def test_valid_checkout_event_credits_the_subtotal_once(bgw: RunningGateway) -> None:
    uid, _ = bgw.user("0")
    r = deliver(
        bgw, event("evt_1", "checkout.session.completed", session(uid, subtotal=2000, total=2200))
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "credited"
    # The pre-tax subtotal is credited, not the total with tax.
    assert bgw.balance(uid) == usd("20.00")
    rows = entries(bgw, uid)
    assert [(e["kind"], e["reference"]) for e in rows] == [("topup", "stripe:cs_test_1")]
    assert_balance_is_sum_of_entries(bgw, uid)


def test_three_replays_credit_once(bgw: RunningGateway) -> None:
    uid, _ = bgw.user("0")
    delivery = event("evt_replayed", "checkout.session.completed", session(uid))
    answers = [deliver(bgw, delivery) for _ in range(4)]
    assert [a.status_code for a in answers] == [200] * 4
    assert [a.json()["duplicate"] for a in answers] == [False, True, True, True]
    assert bgw.balance(uid) == usd("10.00")
    assert topups(bgw, uid) == [usd("10.00")]


def test_ten_concurrent_deliveries_credit_once(bgw: RunningGateway) -> None:
    uid, _ = bgw.user("0")
    delivery = event("evt_racing", "checkout.session.completed", session(uid, subtotal=500))
    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda _: deliver(bgw, delivery), range(10)))
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    assert bgw.balance(uid) == usd("5.00")
    assert topups(bgw, uid) == [usd("5.00")]
    rows = ledger_rows(
        bgw, "SELECT status, attempts FROM stripe_events WHERE event_id = ?", "evt_racing"
    )
    assert [(r["status"], r["attempts"]) for r in rows] == [("credited", 10)]
    assert_balance_is_sum_of_entries(bgw, uid)


def test_wrong_secret_is_400_and_credits_nothing(bgw: RunningGateway) -> None:
    uid, _ = bgw.user("0")
    r = deliver(
        bgw,
        event("evt_forged", "checkout.session.completed", session(uid)),
        secret="whsec_not_ours",
    )
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "invalid_signature"
    assert bgw.balance(uid) == 0
    assert events(bgw) == []


def test_stale_timestamp_is_400_and_credits_nothing(bgw: RunningGateway) -> None:
    uid, _ = bgw.user("0")
    r = deliver(
        bgw,
        event("evt_old", "checkout.session.completed", session(uid)),
        timestamp=int(time.time()) - 301,
    )
    assert r.status_code == 400
    assert "tolerance" in r.json()["error"]["message"]
    assert bgw.balance(uid) == 0
    assert events(bgw) == []


def test_missing_signature_is_400(bgw: RunningGateway) -> None:
    import httpx

    r = httpx.post(f"{bgw.base_url}/webhooks/stripe", content=b"{}")
    assert r.status_code == 400


def test_unpaid_session_credits_nothing_until_async_payment_succeeded(
    bgw: RunningGateway,
) -> None:
    uid, _ = bgw.user("0")
    r = deliver(bgw, event("evt_unpaid", "checkout.session.completed", session(uid, paid="unpaid")))
    assert r.json()["status"] == "awaiting_payment"
    assert bgw.balance(uid) == 0
    r = deliver(
        bgw, event("evt_async_ok", "checkout.session.async_payment_succeeded", session(uid))
    )
    assert r.json()["status"] == "credited"
    assert bgw.balance(uid) == usd("10.00")
    # The same paid session under yet another event: recorded, not credited again.
    r = deliver(bgw, event("evt_late_copy", "checkout.session.completed", session(uid)))
    assert r.json()["status"] == "credited"
    assert topups(bgw, uid) == [usd("10.00")]


def test_async_payment_failed_is_recorded_and_credits_nothing(bgw: RunningGateway) -> None:
    uid, _ = bgw.user("0")
    deliver(bgw, event("evt_unpaid2", "checkout.session.completed", session(uid, paid="unpaid")))
    r = deliver(
        bgw,
        event(
            "evt_async_bad", "checkout.session.async_payment_failed", session(uid, paid="unpaid")
        ),
    )
    assert r.status_code == 200
    assert [e["id"] for e in events(bgw, "payment_failed")] == ["evt_async_bad"]
    assert bgw.balance(uid) == 0


def test_foreign_currency_is_recorded_not_credited(bgw: RunningGateway) -> None:
    uid, _ = bgw.user("0")
    r = deliver(bgw, event("evt_eur", "checkout.session.completed", session(uid, currency="eur")))
    assert r.status_code == 200
    assert r.json()["status"] == "foreign_currency"
    assert bgw.balance(uid) == 0
    assert [e["id"] for e in events(bgw, "foreign_currency")] == ["evt_eur"]


def test_user_found_through_metadata_when_no_client_reference(bgw: RunningGateway) -> None:
    a, _ = bgw.user("0")
    b, _ = bgw.user("0")
    deliver(
        bgw,
        event(
            "evt_md1",
            "checkout.session.completed",
            session(None, session_id="cs_md1", metadata={"user_id": a}),
        ),
    )
    deliver(
        bgw,
        event(
            "evt_md2",
            "checkout.session.completed",
            session(None, session_id="cs_md2", metadata={"userId": b}),
        ),
    )
    assert (bgw.balance(a), bgw.balance(b)) == (usd("10.00"), usd("10.00"))


def test_unknown_user_is_200_kept_unmatched_and_replayable(bgw: RunningGateway) -> None:
    delivery = event("evt_nobody", "checkout.session.completed", session("ghost"))
    r = deliver(bgw, delivery)
    assert r.status_code == 200
    assert r.json()["status"] == "unmatched"
    [kept] = events(bgw, "unmatched")
    assert (kept["id"], kept["user_id"], kept["amount"]) == ("evt_nobody", "ghost", "10.00")
    # The operator creates the user; Stripe's retry (or a replay) then credits it.
    bgw.user("0", user_id="ghost")
    assert deliver(bgw, delivery).json()["status"] == "credited"
    assert bgw.balance("ghost") == usd("10.00")
    assert events(bgw, "unmatched") == []


def test_malformed_object_is_200_and_unmatched(bgw: RunningGateway) -> None:
    uid, _ = bgw.user("0")
    r = deliver(
        bgw, event("evt_bad_amount", "checkout.session.completed", session(uid, subtotal="lots"))
    )  # type: ignore[arg-type]
    assert (r.status_code, r.json()["status"]) == (200, "unmatched")
    r = deliver(bgw, {"id": "evt_no_object", "type": "checkout.session.completed", "data": {}})
    assert (r.status_code, r.json()["status"]) == (200, "unmatched")
    assert bgw.balance(uid) == 0


def test_unrelated_event_type_is_200_and_ignored(bgw: RunningGateway) -> None:
    r = deliver(bgw, event("evt_other", "customer.created", {"id": "cus_1"}))
    assert r.status_code == 200
    assert r.json()["status"] == "ignored"
    assert events(bgw) == []


def test_checkout_payment_intent_event_does_not_credit(bgw: RunningGateway) -> None:
    uid, _ = bgw.user("0")
    r = deliver(
        bgw,
        event(
            "evt_pi_checkout",
            "payment_intent.succeeded",
            {
                "id": "pi_checkout_1",
                "object": "payment_intent",
                "amount_received": 1000,
                "currency": "usd",
                "metadata": {"user_id": uid, "purpose": "checkout"},
            },
        ),
    )
    assert r.json()["status"] == "ignored"
    assert bgw.balance(uid) == 0


def charge(intent: str, *, amount: int, refunded: int, charge_id: str = "ch_1") -> dict:
    return {
        "id": charge_id,
        "object": "charge",
        "payment_intent": intent,
        "amount": amount,
        "amount_refunded": refunded,
        "currency": "usd",
        "refunded": refunded == amount,
    }


def test_refund_debits_the_refunded_credit_once(bgw: RunningGateway) -> None:
    uid, _ = bgw.user("0")
    deliver(
        bgw,
        event("evt_paid", "checkout.session.completed", session(uid, subtotal=2000, intent="pi_r")),
    )
    r = deliver(
        bgw, event("evt_refund_1", "charge.refunded", charge("pi_r", amount=2000, refunded=500))
    )
    assert r.json()["status"] == "refunded"
    assert bgw.balance(uid) == usd("15.00")
    deliver(
        bgw, event("evt_refund_1", "charge.refunded", charge("pi_r", amount=2000, refunded=500))
    )
    # amount_refunded is cumulative: the second refund debits only what it adds.
    r = deliver(
        bgw, event("evt_refund_2", "charge.refunded", charge("pi_r", amount=2000, refunded=1200))
    )
    assert bgw.balance(uid) == usd("8.00")
    refunds = [
        (e["kind"], e["amount"], e["reference"]) for e in entries(bgw, uid) if e["kind"] == "refund"
    ]
    assert refunds == [
        ("refund", -usd("5.00"), "stripe-refund:ch_1:500"),
        ("refund", -usd("7.00"), "stripe-refund:ch_1:1200"),
    ]
    assert_balance_is_sum_of_entries(bgw, uid)


def test_refund_of_spent_credit_debits_what_is_left_and_says_so(bgw: RunningGateway) -> None:
    uid, key = bgw.user("0")
    deliver(
        bgw,
        event(
            "evt_paid2",
            "checkout.session.completed",
            session(uid, session_id="cs_2", subtotal=1000, intent="pi_s"),
        ),
    )
    bgw.client(key).chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "spend a little"}], max_tokens=10
    )
    bgw.wait_usage(uid, 1)
    r = deliver(
        bgw,
        event(
            "evt_refund_all",
            "charge.refunded",
            charge("pi_s", amount=1000, refunded=1000, charge_id="ch_2"),
        ),
    )
    assert (r.status_code, r.json()["status"]) == (200, "refund_shortfall")
    # The ledger never takes a payment below zero; the shortfall is left for the operator.
    assert ledger_rows(bgw, "SELECT balance FROM users WHERE id = ?", uid) == [{"balance": 0}]
    assert bgw.balance(uid) == 0
    assert [e["id"] for e in events(bgw, "refund_shortfall")] == ["evt_refund_all"]
    assert_balance_is_sum_of_entries(bgw, uid)


def test_refund_for_unknown_payment_is_unmatched(bgw: RunningGateway) -> None:
    r = deliver(
        bgw,
        event("evt_refund_x", "charge.refunded", charge("pi_unknown", amount=1000, refunded=1000)),
    )
    assert (r.status_code, r.json()["status"]) == (200, "unmatched")
