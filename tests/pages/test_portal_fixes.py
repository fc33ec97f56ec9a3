"""The portal after its newcomer trial: sign-ups from one address stop at the limit, a bad
email is refused beside its field, usage tables name keys, an empty balance says calls are
refused, the icon is served, and a payment button that cannot work looks disabled and says
why."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.portal.web import (
    PASSWORD,
    Browsers,
    new_key,
    portal_gateway,
    post_form,
    sign_up,
    signed_up,
    user_id_of,
)
from tests.support.gateway import GatewayFactory

PROMPT = [{"role": "user", "content": "hello"}]


@pytest.fixture
def browsers() -> Iterator[Browsers]:
    made = Browsers()
    yield made
    made.close()


def test_sign_ups_from_one_address_stop_at_the_limit_and_bad_emails_are_refused_beside_the_field(
    gateways: GatewayFactory, browsers: Browsers
) -> None:
    gw = portal_gateway(gateways, GATEWAY_PORTAL_SIGNUP_LIMIT="3")
    c = browsers(gw)
    bad = sign_up(c, '"><script>alert(1)</script>@x.example')
    assert bad.status_code == 422
    assert 'id="email-error"' in bad.text
    assert 'aria-invalid="true" aria-describedby="email-error"' in bad.text
    assert "this is not an email address" in bad.text
    assert 'class="flash error"' not in bad.text  # beside the field, not at the top
    for n in range(3):
        assert sign_up(browsers(gw), f"farm{n}@example.com").status_code == 303
    refused = sign_up(browsers(gw), "farm3@example.com")
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) > 3600
    assert "too many sign-ups from your network" in refused.text
    found = gw.admin.get("/admin/users", params={"query": "farm"}).json()["data"]
    assert len(found) == 3  # $15 of welcome credit at most, not $20


def test_usage_tables_name_keys_and_an_empty_balance_says_calls_are_refused(
    gateways: GatewayFactory, browsers: Browsers
) -> None:
    gw = portal_gateway(gateways)
    c = signed_up(browsers, gw, "kim@example.com")
    key_id, key = new_key(c, "laptop")
    gw.client(key).chat.completions.create(model="chat", messages=PROMPT)
    uid = user_id_of(gw, "kim@example.com")
    gw.wait_usage(uid, 1)
    for listing in ("/portal/usage", "/portal"):
        shown = c.get(listing).text
        assert f'<span title="{key_id}">laptop</span>' in shown, listing
    gw.admin.put(f"/admin/users/{uid}/balance", json={"balance": "0", "reason": "test"})
    overview = c.get("/portal").text
    assert "calls are refused until you top up" in overview
    assert "soon" not in overview


def test_the_icon_is_served(gateways: GatewayFactory) -> None:
    gw = gateways.start()
    ico = httpx.get(f"{gw.base_url}/favicon.ico")
    assert ico.status_code == 200
    assert ico.headers["content-type"] == "image/x-icon"
    assert ico.content[:4] == b"\0\0\1\0"
    svg = httpx.get(f"{gw.base_url}/static/favicon.svg")
    assert svg.status_code == 200
    assert svg.headers["content-type"].startswith("image/svg+xml")
    page = httpx.get(f"{gw.base_url}/portal/login").text
    assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in page


def test_a_payment_button_that_cannot_work_looks_disabled_and_says_why(
    gateways: GatewayFactory, page: Page
) -> None:
    gw = gateways.start(GATEWAY_PORTAL_SIGNUP="open")  # no Stripe keys
    page.goto(f"{gw.base_url}/portal/signup")
    page.get_by_label("Email").fill("lee@example.com")
    page.get_by_label("Password (8 characters or more)").fill(PASSWORD)
    page.get_by_label("Password again").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    page.wait_for_url(f"{gw.base_url}/portal?welcome=1")
    page.goto(f"{gw.base_url}/portal/billing")
    pay = page.get_by_role("button", name="Continue to payment")
    expect(pay).to_be_disabled()
    expect(page.locator("#payments-off")).to_contain_text("not set up")
    expect(pay).to_have_attribute("aria-describedby", "payments-off")
    save = page.get_by_role("button", name="Save")
    style = "e => [getComputedStyle(e).backgroundColor, getComputedStyle(e).cursor]"
    assert pay.evaluate(style) != save.evaluate(style)
    assert pay.evaluate(style)[1] == "not-allowed"


def test_key_and_account_form_errors_are_in_plain_words_beside_their_field(
    gateways: GatewayFactory, browsers: Browsers
) -> None:
    gw = portal_gateway(gateways)
    c = signed_up(browsers, gw, "max@example.com")
    key_id, _ = new_key(c, "ci")
    cases = [
        ({"rpm": "abc"}, "rpm", "Requests per minute: enter a whole number above 0"),
        ({"max_concurrent": "0"}, "max_concurrent", "Calls at once: enter a whole number"),
        ({"budget": "lots"}, "budget", "Budget: enter an amount in dollars"),
        ({"budget": "5", "tz": "Mars/Olympus"}, "tz", "Time zone: enter a zone name"),
    ]
    for fields, field, words in cases:
        r = post_form(
            c, f"/portal/keys/{key_id}", f"/portal/keys/{key_id}", {"name": "ci", **fields}
        )
        assert r.status_code == 422, r.text
        assert f'<span class="field-error" id="{field}-error" role="alert">{words}' in r.text
        assert f'id="{field}" name="{field}"' in r.text
        assert "limits." not in r.text  # the API's wording stays in the API
    r = post_form(
        c,
        "/portal/account",
        "/portal/account/password",
        {"current_password": "wrong one!", "new_password": "x" * 10, "confirm": "x" * 10},
    )
    assert r.status_code == 401
    assert 'id="current_password-error"' in r.text
