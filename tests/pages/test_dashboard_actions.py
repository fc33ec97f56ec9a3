"""The dashboard's actions over HTTP, each checked against what the gateway then does: a
revoked key stops working, a disabled user is refused, limits and balances are saved, bad
input is shown on the page and changes nothing; users are searched and paged; an unmatched
Stripe event is replayed once; prices are reloaded from models.yaml."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from datetime import timedelta

import httpx
import openai
import orjson
import pytest

from gateway.ledger import open_ledger
from gateway.records import StripeEvent, utcnow
from tests.billing.helpers import STRIPE_KEY, WEBHOOK_SECRET, deliver, event, ledger_rows, session
from tests.pages.browsing import FORM_ID, browser_client, csrf_of, form_id_of, operator
from tests.support.gateway import GatewayFactory, RunningGateway, usd


@pytest.fixture
def dash(gw: RunningGateway) -> Iterator[httpx.Client]:
    with browser_client(gw) as client:
        yield operator(client)


NO_LIMITS = {"budget": "", "period": "total", "rpm": "", "tpm": "", "max_concurrent": ""}


def post(client: httpx.Client, page: str, action: str, **form: str) -> httpx.Response:
    """Posts ``form`` to ``action`` with the CSRF token (and the money forms' one-time id) of
    ``page``, as the browser would."""
    html = client.get(page).text
    hidden = {"csrf_token": csrf_of(html)}
    if FORM_ID.search(html):
        hidden["form_id"] = form_id_of(html)
    return client.post(action, data={**hidden, **form})


def call(gw: RunningGateway, key: str) -> None:
    gw.client(key).chat.completions.create(
        model="cheap", messages=[{"role": "user", "content": "hi"}], max_tokens=5
    )


def test_a_key_revoked_on_the_page_stops_working(gw: RunningGateway, dash: httpx.Client) -> None:
    _, key = gw.user("1.00", user_id="alice")
    call(gw, key)
    [key_id] = re.findall(
        r"/keys/(key_[A-Za-z0-9]+)/revoke", dash.get("/dashboard/users/alice").text
    )
    # Asked first (the page without its script): a confirm page, nothing revoked yet.
    r = post(dash, "/dashboard/users/alice", f"/dashboard/users/alice/keys/{key_id}/revoke")
    assert r.status_code == 200
    assert "Revoke key sk-" in r.text
    assert 'name="confirm" value="yes"' in r.text
    call(gw, key)
    r = post(
        dash,
        "/dashboard/users/alice",
        f"/dashboard/users/alice/keys/{key_id}/revoke",
        confirm="yes",
    )
    assert r.status_code == 303
    assert dash.get(r.headers["location"]).text.count("revoked") >= 1
    with pytest.raises(openai.AuthenticationError):
        call(gw, key)
    # A key is revoked only from its own user's page.
    _, other = gw.user("1.00", user_id="bob")
    [bobs] = re.findall(r"/keys/(key_[A-Za-z0-9]+)/revoke", dash.get("/dashboard/users/bob").text)
    r = post(dash, "/dashboard/users/alice", f"/dashboard/users/alice/keys/{bobs}/revoke")
    assert r.status_code == 404
    assert "has no key" in r.text
    call(gw, other)


def test_a_user_disabled_on_the_page_is_refused_until_enabled(
    gw: RunningGateway, dash: httpx.Client
) -> None:
    _, key = gw.user("1.00", user_id="alice")
    r = post(dash, "/dashboard/users/alice", "/dashboard/users/alice/status", disabled="true")
    assert r.status_code == 200
    assert "Disable user alice?" in r.text
    call(gw, key)  # not yet
    r = post(
        dash,
        "/dashboard/users/alice",
        "/dashboard/users/alice/status",
        disabled="true",
        confirm="yes",
    )
    assert r.status_code == 303
    page = dash.get(r.headers["location"]).text
    assert "User disabled" in page
    assert "Enable user" in page
    with pytest.raises(openai.APIStatusError):
        call(gw, key)
    post(dash, "/dashboard/users/alice", "/dashboard/users/alice/status", disabled="false")
    call(gw, key)


def test_limits_and_a_balance_set_on_the_page_are_the_users(
    gw: RunningGateway, dash: httpx.Client
) -> None:
    gw.user("1.00", user_id="alice")
    r = post(
        dash, "/dashboard/users/alice", "/dashboard/users/alice/limits",
        budget="2.50", period="day", tz="Europe/Paris", rpm="30", tpm="", max_concurrent="2",
    )  # fmt: skip
    assert r.status_code == 303
    limits = gw.admin.get("/admin/users/alice").json()["limits"]
    assert limits == {
        "budget": {"amount": "2.50", "period": "day", "tz": "Europe/Paris"},
        "rpm": 30,
        "tpm": None,
        "max_concurrent": 2,
    }
    r = post(
        dash, "/dashboard/users/alice", "/dashboard/users/alice/balance",
        balance="7.25", reason="migrated from the old system",
    )  # fmt: skip
    assert r.status_code == 303
    assert gw.balance("alice") == usd("7.25")
    [row] = ledger_rows(gw, "SELECT balance FROM users WHERE id = 'alice'")
    assert row["balance"] == usd("7.25")
    [audit] = ledger_rows(gw, "SELECT * FROM audit_log WHERE action = 'balance.set'")
    assert audit["reason"] == "migrated from the old system"
    assert audit["actor"] == "admin:dashboard"


@pytest.mark.parametrize(
    ("action", "form", "shown"),
    [
        ("credits", {"amount": "lots", "reason": "x"}, "not a decimal amount"),
        ("credits", {"amount": "0.0000000001", "reason": "x"}, "decimal places"),
        ("balance", {"balance": "", "reason": "x"}, "amount"),
        ("limits", {**NO_LIMITS, "budget": "1", "period": "fortnight"}, "period"),
        ("limits", {**NO_LIMITS, "rpm": "-3"}, "rpm"),
    ],
)  # fmt: skip
def test_bad_input_is_shown_on_the_page_and_changes_nothing(
    gw: RunningGateway, dash: httpx.Client, action: str, form: dict[str, str], shown: str
) -> None:
    gw.user("1.00", user_id="alice")
    before = ledger_rows(gw, "SELECT * FROM users WHERE id = 'alice'")
    events = ledger_rows(gw, "SELECT * FROM audit_log")
    r = post(dash, "/dashboard/users/alice", f"/dashboard/users/alice/{action}", **form)
    assert r.status_code in (400, 422), r.text
    assert 'role="alert"' in r.text
    alert = r.text.split('role="alert">')[1].split("</p>")[0]
    assert shown in alert.lower()
    assert "User alice" in r.text  # the page itself, with the error on it
    assert ledger_rows(gw, "SELECT * FROM users WHERE id = 'alice'") == before
    assert ledger_rows(gw, "SELECT * FROM audit_log") == events


def test_users_are_searched_and_paged_without_skips_or_repeats(
    gw: RunningGateway, dash: httpx.Client
) -> None:
    for n in range(27):
        gw.user("1.00", user_id=f"user-{n:02d}")
    gw.user("1.00", user_id="zed")
    first = dash.get("/dashboard/users").text
    ids = re.findall(r'href="/dashboard/users/([^"]+)"', first)
    assert len(ids) == 25
    [more] = re.findall(r'href="(/dashboard/users\?q=&amp;cursor=[^"]+)"', first)
    second = dash.get(more.replace("&amp;", "&")).text
    ids += re.findall(r'href="/dashboard/users/([^"]+)"', second)
    assert sorted(ids) == sorted([f"user-{n:02d}" for n in range(27)] + ["zed"])
    assert "Next page" not in second
    found = dash.get("/dashboard/users", params={"q": "USER-1"}).text
    assert sorted(re.findall(r'href="/dashboard/users/([^"]+)"', found)) == [
        f"user-{n}" for n in range(10, 20)
    ]


def test_an_unmatched_stripe_event_is_replayed_once_its_user_exists(
    gateways: GatewayFactory,
) -> None:
    gw = gateways.start(STRIPE_API_KEY=STRIPE_KEY, STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET)
    paid = event("evt_later_1", "checkout.session.completed", session("later", subtotal=1000))
    assert deliver(gw, paid).json()["status"] == "unmatched"
    with browser_client(gw) as dash:
        operator(dash)
        page = dash.get("/dashboard/payments").text
        assert "evt_later_1" in page
        assert "no user &#39;later&#39;" in page
        gw.admin.post("/admin/users", json={"id": "later"})
        r = post(dash, "/dashboard/payments", "/dashboard/payments/evt_later_1/replay")
        assert r.status_code == 200
        assert "Event evt_later_1 replayed: credited (ledger entry 1)." in r.text
        assert gw.balance("later") == usd("10.00")
        # Credited now: nothing left to replay, and a second try moves nothing.
        assert "evt_later_1" not in dash.get("/dashboard/payments").text
        r = post(dash, "/dashboard/payments", "/dashboard/payments/evt_later_1/replay")
        assert r.status_code == 404
        assert gw.balance("later") == usd("10.00")


def test_a_payment_in_another_currency_is_shown_with_what_to_do_and_no_replay(
    gateways: GatewayFactory,
) -> None:
    gw = gateways.start(STRIPE_API_KEY=STRIPE_KEY, STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET)
    gw.user("0", user_id="carol")
    paid = event("evt_eur_1", "checkout.session.completed", session("carol", currency="eur"))
    assert deliver(gw, paid).json()["status"] == "foreign_currency"
    with browser_client(gw) as dash:
        operator(dash)
        page = dash.get("/dashboard/payments").text
        section = page.split('id="foreign_currency"')[1].split("</section>")[0]
        assert "evt_eur_1" in section
        assert "Paid in another currency, not credited (1)" in section
        assert "refund the payment in Stripe" in section
        assert 'href="/dashboard/users/carol"' in section
        assert "/replay" not in section
        r = post(dash, "/dashboard/payments", "/dashboard/payments/evt_eur_1/replay")
        assert r.status_code == 404
    assert gw.balance("carol") == 0


def test_prices_are_reloaded_from_models_yaml(
    gw: RunningGateway, gateways: GatewayFactory, dash: httpx.Client
) -> None:
    assert "0.10" in dash.get("/dashboard/prices").text
    path = gateways.models_file()
    path.write_text(path.read_text().replace('input: "0.10"', 'input: "0.20"'))
    r = post(dash, "/dashboard/prices", "/dashboard/prices/reload", reason="new list")
    assert r.status_code == 200
    assert "1 price change(s)" in r.text
    assert "0.20" in r.text
    [row] = gw.admin.get("/admin/models").json()["data"][1:2]
    assert row["price_per_1m_tokens"]["input"] == "0.20"
    # An invalid file is refused on the page and the prices stay.
    path.write_text("models: [")
    r = post(dash, "/dashboard/prices", "/dashboard/prices/reload", reason="broken")
    assert r.status_code >= 400
    assert 'role="alert"' in r.text
    assert "0.20" in r.text


def test_a_usage_cursor_edited_by_hand_is_shown_as_an_error(
    gw: RunningGateway, dash: httpx.Client
) -> None:
    gw.user("1.00", user_id="alice")
    r = dash.get("/dashboard/users/alice", params={"cursor": "not-a-cursor"})
    assert r.status_code == 400
    assert 'role="alert"' in r.text
    assert "User alice" in r.text


@pytest.mark.parametrize(
    ("action", "field", "value", "expected"),
    [("credits", "amount", "2.50", "3.50"), ("balance", "balance", "7.00", "7.00")],
)
def test_a_money_form_posted_twice_applies_once(
    gw: RunningGateway, dash: httpx.Client, action: str, field: str, value: str, expected: str
) -> None:
    gw.user("1.00", user_id="alice")
    html = dash.get("/dashboard/users/alice").text
    form = {"csrf_token": csrf_of(html), "form_id": form_id_of(html), "reason": "once"}
    first = dash.post(f"/dashboard/users/alice/{action}", data={**form, field: value})
    assert first.status_code == 303
    if action == "balance":
        gw.user("1.00", user_id="bob")  # anything may happen between the two posts
        post(
            dash, "/dashboard/users/alice", "/dashboard/users/alice/credits", amount="1", reason="x"
        )
        expected = "8.00"
    again = dash.post(f"/dashboard/users/alice/{action}", data={**form, field: value})
    assert again.status_code == 303
    assert again.headers["location"].endswith("?done=already")
    assert "Already applied" in dash.get(again.headers["location"]).text
    assert gw.balance("alice") == usd(expected)
    kind = "grant" if action == "credits" else "adjustment"
    rows = ledger_rows(
        gw, "SELECT * FROM ledger_entries WHERE user_id = 'alice' AND reason = 'once'"
    )
    assert [r["kind"] for r in rows] == [kind]
    # The same rendered form with another amount is refused, not applied.
    other = dash.post(f"/dashboard/users/alice/{action}", data={**form, field: "99"})
    assert other.status_code == 409
    assert "already used" in other.text
    assert gw.balance("alice") == usd(expected)
    # A fresh page is a fresh form.
    assert form_id_of(dash.get("/dashboard/users/alice").text) != form["form_id"]


def test_a_money_form_without_its_one_time_id_is_refused(
    gw: RunningGateway, dash: httpx.Client
) -> None:
    gw.user("1.00", user_id="alice")
    token = csrf_of(dash.get("/dashboard/users/alice").text)
    r = dash.post(
        "/dashboard/users/alice/credits", data={"csrf_token": token, "amount": "5", "reason": "x"}
    )
    assert r.status_code == 400
    assert "reload the page" in r.text
    assert gw.balance("alice") == usd("1.00")


def test_the_admin_api_takes_an_idempotency_reference(gw: RunningGateway) -> None:
    gw.user("1.00", user_id="alice")
    body = {"amount": "2.00", "reason": "retry-safe", "reference": "order-2024-0001"}
    first = gw.admin.post("/admin/users/alice/credits", json=body).json()
    again = gw.admin.post("/admin/users/alice/credits", json=body).json()
    assert (first["duplicate"], again["duplicate"]) == (False, True)
    assert again["entry"] == first["entry"]
    assert first["entry"]["reference"] == "admin:ref:order-2024-0001"
    assert gw.balance("alice") == usd("3.00")
    bad = gw.admin.post("/admin/users/alice/credits", json={**body, "reference": "no spaces!"})
    assert bad.status_code == 422
    assert bad.json()["error"]["param"] == "reference"


def test_an_event_stuck_in_processing_is_shown_after_ten_minutes_and_replayed_once(
    gateways: GatewayFactory,
) -> None:
    gw = gateways.start(STRIPE_API_KEY=STRIPE_KEY, STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET)
    gw.user("0", user_id="dave")
    payloads = {
        eid: orjson.dumps(
            event(eid, "checkout.session.completed", session("dave", session_id=f"cs_{eid}"))
        ).decode()
        for eid in ("evt_stuck", "evt_busy")
    }

    async def crash_midway() -> None:
        # What a delivery that died after claiming the event leaves behind.
        ledger = await open_ledger(gw.settings.database_url)
        try:
            for eid, payload in payloads.items():
                await ledger.payments.claim_stripe_event(
                    StripeEvent(eid, "checkout.session.completed", "processing", payload)
                )
            await ledger.database.execute(
                "UPDATE stripe_events SET updated_at = $1 WHERE event_id = $2",
                utcnow() - timedelta(hours=1),
                "evt_stuck",
            )
        finally:
            await ledger.close()

    asyncio.run(crash_midway())
    with browser_client(gw) as dash:
        operator(dash)
        section = dash.get("/dashboard/payments").text.split('id="processing"')[1]
        section = section.split("</section>")[0]
        assert "evt_stuck" in section
        assert "evt_busy" not in section  # a delivery may be working on it right now
        r = post(dash, "/dashboard/payments", "/dashboard/payments/evt_busy/replay")
        assert r.status_code == 404
        r = post(dash, "/dashboard/payments", "/dashboard/payments/evt_stuck/replay")
        assert r.status_code == 200
        assert "Event evt_stuck replayed: credited" in r.text
        r = post(dash, "/dashboard/payments", "/dashboard/payments/evt_stuck/replay")
        assert r.status_code == 404
    assert gw.balance("dave") == usd("10.00")
