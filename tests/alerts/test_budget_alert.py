"""``budget.reached``: a budget refusing a call raises one alert per budget and period, to a
real receiver, signed; a key's budget names the key, a user's own budget names none."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import openai
import orjson
import pytest

from gateway.alerts import signature
from tests.alerts.receiver import Receiver
from tests.alerts.test_delivery import SECRET, alert_env, deliveries
from tests.support.fixtures import Database
from tests.support.gateway import GatewayFactory, RunningGateway, free_port
from tests.support.waiting import wait_until


@pytest.fixture
def alerting(
    gateways: GatewayFactory, database: Database
) -> Iterator[tuple[RunningGateway, Receiver]]:
    receiver = Receiver(free_port(), {"/hook": ["ok"]}).start()
    gw = gateways.start(**alert_env(database, receiver.url("/hook")))
    yield gw, receiver
    gw.stop()
    receiver.stop()


def refused(gw: RunningGateway, key: str) -> openai.APIStatusError:
    with pytest.raises(openai.APIStatusError) as caught:
        gw.client(key).chat.completions.create(
            model="chat", max_tokens=100, messages=[{"role": "user", "content": "hello"}]
        )
    return caught.value


def alerts(gw: RunningGateway, receiver: Receiver, count: int) -> list[dict[str, Any]]:
    wait_until(lambda: len(receiver.hits), lambda n: n >= count, wanted=f"{count} alerts")
    for hit in receiver.hits:
        signature.verify(hit.body, hit.headers["x-gateway-signature"], SECRET)
    return [orjson.loads(h.body) for h in receiver.hits]


def test_a_key_budget_that_refuses_calls_raises_one_alert(
    alerting: tuple[RunningGateway, Receiver],
) -> None:
    gw, receiver = alerting
    uid, _ = gw.user("10.00")
    made = gw.admin.post(
        f"/admin/users/{uid}/keys",
        json={"limits": {"budget": {"amount": "0.000001", "period": "day"}}},
    ).json()
    for _ in range(3):  # every call reserves more than the budget: each is refused
        assert refused(gw, made["key"]).body["code"] == "key_budget_exceeded"
    [alert] = [a for a in alerts(gw, receiver, 1) if a["type"] == "budget.reached"]
    data = alert["data"]
    assert (data["key_id"], data["user_id"]) == (made["id"], uid)
    assert (data["budget"], data["period"]) == ("0.000001", "day")
    start = datetime.fromisoformat(data["period_start"])  # today's midnight, UTC
    assert (start.tzinfo, start.hour, start.minute) == (UTC, 0, 0)
    assert len(deliveries(gw, type="budget.reached")) == 1


def test_a_users_own_budget_raises_its_alert_naming_no_key(
    alerting: tuple[RunningGateway, Receiver],
) -> None:
    gw, receiver = alerting
    uid, key = gw.user("10.00")
    r = gw.admin.patch(f"/admin/users/{uid}", json={"limits": {"budget": {"amount": "0.000001"}}})
    assert r.status_code == 200, r.text
    assert refused(gw, key).body["code"] == "key_budget_exceeded"
    [alert] = [a for a in alerts(gw, receiver, 1) if a["type"] == "budget.reached"]
    assert alert["data"]["key_id"] is None
    assert (alert["data"]["user_id"], alert["data"]["period"]) == (uid, "total")
    assert alert["data"]["period_start"] is None
