"""The payment alerts through the real Stripe webhook: a refund the balance cannot cover
raises ``refund.shortfall`` (once, however often Stripe redelivers), a failed auto top-up
raises ``auto_topup.failed``; both reach a real receiver, signed."""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import pytest
import respx

from gateway.alerts import signature
from tests.alerts.receiver import Receiver
from tests.alerts.test_delivery import SECRET, alert_env, deliveries
from tests.billing.helpers import STRIPE_KEY, WEBHOOK_SECRET, deliver, event, session
from tests.billing.test_stripe_webhook import charge
from tests.support.fixtures import Database
from tests.support.gateway import GatewayFactory, RunningGateway, free_port
from tests.support.waiting import wait_until


@pytest.fixture
def paying(
    gateways: GatewayFactory, database: Database
) -> Iterator[tuple[RunningGateway, Receiver]]:
    receiver = Receiver(free_port(), {"/hook": ["ok"]}).start()
    with respx.mock(assert_all_called=False) as stripe_api:
        stripe_api.route(host="127.0.0.1").pass_through()
        gw = gateways.start(
            **alert_env(database, receiver.url("/hook")),
            STRIPE_API_KEY=STRIPE_KEY,
            STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
        )
        yield gw, receiver
        gw.stop()
    receiver.stop()


def received(receiver: Receiver, count: int) -> list[dict]:
    wait_until(lambda: len(receiver.hits), lambda n: n >= count, wanted=f"{count} alerts received")
    for hit in receiver.hits:
        signature.verify(hit.body, hit.headers["x-gateway-signature"], SECRET)
    return [orjson.loads(h.body) for h in receiver.hits]


def test_a_refund_of_spent_credit_raises_one_refund_shortfall_alert(
    paying: tuple[RunningGateway, Receiver],
) -> None:
    gw, receiver = paying
    uid, key = gw.user("0")
    paid = session(uid, session_id="cs_a", subtotal=1000, intent="pi_a")
    assert deliver(gw, event("evt_paid", "checkout.session.completed", paid)).status_code == 200
    # Spend below the 10.00 paid, so the full refund cannot be taken back.
    gw.client(key).chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "spend"}], max_tokens=10
    )
    gw.wait_usage(uid, 1)
    refund = event("evt_refund", "charge.refunded", charge("pi_a", amount=1000, refunded=1000))
    r = deliver(gw, refund)
    assert (r.status_code, r.json()["status"]) == (200, "refund_shortfall")
    # Stripe redelivers the same event under a new id: the same shortfall, one alert.
    deliver(gw, {**refund, "id": "evt_refund_again"})
    [alert] = [a for a in received(receiver, 1) if a["type"] == "refund.shortfall"]
    data = alert["data"]
    assert (data["user_id"], data["refund"]) == (uid, "10.00")
    assert int(data["debited"].replace(".", "")) > 0
    assert data["shortfall"] != "0.00"
    assert len(deliveries(gw, type="refund.shortfall")) == 1


def test_a_failed_auto_top_up_raises_an_alert(paying: tuple[RunningGateway, Receiver]) -> None:
    gw, receiver = paying
    uid, _ = gw.user("1.00")
    intent = {
        "id": "pi_auto_1",
        "object": "payment_intent",
        "currency": "usd",
        "metadata": {"user_id": uid, "purpose": "auto_topup", "trigger": "4"},
        "last_payment_error": {"message": "Your card was declined."},
    }
    r = deliver(gw, event("evt_failed", "payment_intent.payment_failed", intent))
    assert (r.status_code, r.json()["status"]) == (200, "payment_failed")
    [alert] = received(receiver, 1)
    assert alert["type"] == "auto_topup.failed"
    assert alert["data"] == {
        "user_id": uid,
        "reason": "Your card was declined.",
        "payment_intent": "pi_auto_1",
        "trigger": 4,
    }
