"""Alert webhooks end to end: a real gateway (SQLite and PostgreSQL ledgers) posts to a real
aiohttp receiver. The receiver checks the signature the way the README documents, the sender
retries after 500s and timeouts with the same event id, gives up after the last attempt, and
an alert waiting in the outbox is delivered by the next gateway to start."""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import pytest
import stripe

from gateway import cli
from gateway.alerts import signature
from tests.alerts.receiver import Receiver
from tests.support.fixtures import Database
from tests.support.gateway import ADMIN_KEY, GatewayFactory, RunningGateway, free_port
from tests.support.waiting import wait_until

SECRET = "whsec_alerts_test"


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    started: list[Receiver] = []
    yield started
    for r in started:
        r.stop()


def alert_env(database: Database, *urls: str, **more: str) -> dict[str, str]:
    return {
        "GATEWAY_DATABASE_URL": database.url,
        "GATEWAY_ALERT_WEBHOOK_URLS": ",".join(urls),
        "GATEWAY_ALERT_WEBHOOK_SECRET": SECRET,
        "GATEWAY_ALERT_WEBHOOK_TIMEOUT": "0.5",
        "GATEWAY_ALERT_WEBHOOK_BACKOFF": "0.05",
        "GATEWAY_ALERT_WEBHOOK_BACKOFF_MAX": "0.2",
        "GATEWAY_ALERT_WEBHOOK_POLL": "0.05",
        **more,
    }


def deliveries(gw: RunningGateway, **params: str) -> list[dict]:
    r = gw.admin.get("/admin/webhooks/deliveries", params=params)
    assert r.status_code == 200, r.text
    return list(r.json()["data"])


def spend_below_warning(gw: RunningGateway) -> str:
    """A user with exactly the warning level (1.00 USD) makes one call: balance.low."""
    user_id, key = gw.user(credit="1.00")
    gw.client(key).chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "hi"}], max_tokens=5
    )
    return user_id


def test_an_alert_is_signed_retried_after_a_500_and_a_timeout_under_one_event_id(
    gateways: GatewayFactory, database: Database, receivers: list[Receiver]
) -> None:
    receiver = Receiver(free_port(), {"/flaky": ["500", "slow", "ok"], "/down": ["500"]})
    receivers.append(receiver.start())
    gw = gateways.start(
        **alert_env(
            database,
            receiver.url("/flaky"),
            receiver.url("/down"),
            GATEWAY_ALERT_WEBHOOK_MAX_ATTEMPTS="3",
        )
    )
    user_id = spend_below_warning(gw)

    rows = wait_until(
        lambda: deliveries(gw),
        lambda rows: len(rows) == 2 and all(r["status"] != "pending" for r in rows),
        wanted="both deliveries finished",
        timeout=20,
    )
    by_endpoint = {r["endpoint"]: r for r in rows}
    ok, down = by_endpoint[receiver.url("/flaky")], by_endpoint[receiver.url("/down")]
    assert (ok["status"], ok["attempts"], ok["last_status"]) == ("delivered", 3, 200)
    assert (down["status"], down["attempts"], down["last_error"]) == ("failed", 3, "HTTP 500")

    hits = receiver.of("/flaky")
    assert [h.answer for h in hits] == ["500", "slow", "ok"]
    # The same body, hence the same event id, on every attempt and every endpoint.
    assert len({h.body for h in receiver.hits}) == 1
    event = orjson.loads(hits[0].body)
    assert event["id"] == ok["event_id"] == down["event_id"]
    assert event["id"].startswith("evt_")
    assert {h.headers["x-gateway-event-id"] for h in receiver.hits} == {event["id"]}
    assert (event["object"], event["type"]) == ("event", "balance.low")
    assert event["data"]["user_id"] == user_id
    assert (event["data"]["level"], event["data"]["threshold"]) == ("warning", "1.00")
    assert ok["event"] == event
    for hit in receiver.hits:
        header = hit.headers["x-gateway-signature"]
        # The README's verification, and Stripe's own library, accept it...
        signature.verify(hit.body, header, SECRET)
        stripe.WebhookSignature.verify_header(hit.body.decode(), header, SECRET, 300)
        # ...and refuse another secret or a changed body.
        with pytest.raises(signature.SignatureError):
            signature.verify(hit.body, header, "whsec_other")
        with pytest.raises(signature.SignatureError):
            signature.verify(hit.body.replace(b"warning", b"critical"), header, SECRET)

    # Filters and the CLI's view of the same outbox.
    assert [r["status"] for r in deliveries(gw, status="failed")] == ["failed"]
    assert deliveries(gw, type="refund.shortfall") == []
    bad = gw.admin.get("/admin/webhooks/deliveries", params={"status": "lost"})
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "status"


def test_an_alert_waiting_in_the_outbox_is_delivered_after_a_restart(
    gateways: GatewayFactory, database: Database, receivers: list[Receiver]
) -> None:
    port = free_port()  # nothing listens yet: every attempt is refused
    receiver = Receiver(port, {"/hook": ["ok"]})
    env = alert_env(database, receiver.url("/hook"), GATEWAY_ALERT_WEBHOOK_MAX_ATTEMPTS="1000")
    first = gateways.start(**env)
    spend_below_warning(first)
    [pending] = wait_until(
        lambda: deliveries(first),
        lambda rows: len(rows) == 1 and rows[0]["attempts"] >= 1,
        wanted="a first refused attempt",
    )
    assert pending["status"] == "pending"
    assert pending["last_error"] == "ConnectError"
    first.stop()

    receivers.append(receiver.start())
    second = gateways.start(**env)
    [done] = wait_until(
        lambda: deliveries(second),
        lambda rows: rows[0]["status"] == "delivered",
        wanted="the delivery after the restart",
        timeout=20,
    )
    assert done["event_id"] == pending["event_id"]
    assert [orjson.loads(h.body)["id"] for h in receiver.hits] == [pending["event_id"]]
    signature.verify(receiver.hits[0].body, receiver.hits[0].headers["x-gateway-signature"], SECRET)


def test_the_cli_shows_the_deliveries_through_the_api_and_direct(
    gateways: GatewayFactory,
    database: Database,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    dead = f"http://127.0.0.1:{free_port()}/hook?token=s3cret"
    gw = gateways.start(**alert_env(database, dead, GATEWAY_ALERT_WEBHOOK_MAX_ATTEMPTS="1"))
    spend_below_warning(gw)
    spend_below_warning(gw)
    wait_until(
        lambda: deliveries(gw, status="failed"), lambda rows: len(rows) == 2, wanted="2 failed"
    )
    for name, value in alert_env(database, dead).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("GATEWAY_ADMIN_KEY", ADMIN_KEY)
    monkeypatch.setenv("GATEWAY_URL", gw.base_url)
    monkeypatch.delenv("GATEWAY_REDIS_URL", raising=False)

    def run(*argv: str) -> str:
        cli.main(["webhooks", "deliveries", *argv])
        return capsys.readouterr().out

    page = orjson.loads(run("--limit", "1", "--json"))
    assert orjson.loads(run("--limit", "1", "--json", "--direct")) == page
    rest = orjson.loads(run("--cursor", page["next_cursor"], "--json", "--direct"))
    assert [r["status"] for r in page["data"] + rest["data"]] == ["failed", "failed"]
    assert rest["has_more"] is False
    table = run("--status", "failed", "--type", "balance.low")
    assert "balance.low" in table
    assert "ConnectError" in table
    assert "s3cret" not in table + orjson.dumps(page).decode()
