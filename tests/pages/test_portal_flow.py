"""The customer portal end to end in headless Chromium: sign up, the welcome credit, a key
created and copied, a call through the openai SDK with it, the usage row, chart and CSV,
limits set on the key, credit bought through Stripe Checkout (Stripe's API mocked with
respx) and credited by a signed webhook, the balance on the page, the key revoked. Every
portal page is photographed to docs/screenshots/ on the way."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest
import respx
from playwright.sync_api import Page, expect

from gateway.money import format_usd
from tests.billing.helpers import deliver, event, session
from tests.pages.conftest import screenshot
from tests.portal.web import PASSWORD, mock_checkout, portal_gateway, user_id_of
from tests.support.gateway import GatewayFactory, RunningGateway, usd

EMAIL = "ada@example.com"
PROMPT = [{"role": "user", "content": "Say hello"}]


@pytest.fixture
def stripe_api() -> Iterator[respx.MockRouter]:
    """Mocks api.stripe.com only; the gateway on loopback is reached for real."""
    with respx.mock(assert_all_called=False) as mock:
        mock.route(host="127.0.0.1").pass_through()
        yield mock


def nav(page: Page, name: str) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("link", name=name, exact=True).click()


def dollars(page: Page, selector: str) -> int:
    """The nano-USD amount a "$12.34" element shows."""
    return usd(page.locator(selector).inner_text().strip().removeprefix("$"))


def test_sign_up_key_call_usage_payment_and_revocation_in_the_browser(
    gateways: GatewayFactory, stripe_api: respx.MockRouter, page: Page
) -> None:
    gw: RunningGateway = portal_gateway(gateways)
    base = gw.base_url
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])

    # Sign up: the welcome credit is there at once.
    page.goto(f"{base}/portal/signup")
    expect(page.get_by_text("New accounts start with")).to_contain_text("$5.00")
    screenshot(page, "portal-signup")
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password (8 characters or more)").fill(PASSWORD)
    page.get_by_label("Password again").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    page.wait_for_url(f"{base}/portal?welcome=1")
    expect(page.locator("#balance")).to_have_text("$5.00")
    uid = user_id_of(gw, EMAIL)

    # A key, shown once, copied with the button.
    nav(page, "Keys")
    page.get_by_label("Name").fill("laptop")
    page.get_by_role("button", name="Create key").click()
    key = page.locator("#new-key").inner_text().strip()
    assert key.startswith("sk-gw-")
    page.get_by_role("button", name="Copy key").click()
    expect(page.get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == key
    screenshot(page, "portal-key-created")
    page.goto(f"{base}/portal/keys")  # the key is never shown again
    assert key not in page.content()

    # A call through the openai SDK with that key: its row and its bar on the usage page.
    sdk = gw.client(key)
    reply = sdk.chat.completions.create(model="chat", messages=PROMPT)
    assert reply.choices[0].message.content
    [call] = gw.wait_usage(uid, 1)
    nav(page, "Usage")
    row = page.locator("#usage-table tbody tr").first
    expect(row).to_contain_text("chat")
    expect(row).to_contain_text(call["cost"])
    chart_bar = page.locator("svg.chart rect.bar title", has_text="chat")
    expect(chart_bar).to_have_count(1)
    expect(page.locator("#range-total")).to_have_text(f"${call['cost']}")
    screenshot(page, "portal-usage")
    with page.expect_download() as downloaded:
        page.get_by_role("link", name="Download CSV").click()
    csv = downloaded.value.path().read_text()
    assert call["request_id"] in csv
    assert csv.startswith("created_at,request_id,")

    # Limits on the key.
    nav(page, "Keys")
    page.get_by_role("link", name="laptop").click()
    page.get_by_label("Amount, USD").fill("25.00")
    page.get_by_label("Budget period").select_option("month")
    page.get_by_label("Requests per minute").fill("60")
    page.get_by_label("Models allowed").fill("chat, cheap*")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Settings saved.")).to_be_visible()
    screenshot(page, "portal-key")
    key_id = call["key_id"]
    limits = gw.admin.get(f"/admin/keys/{key_id}").json()
    assert limits["limits"]["rpm"] == 60
    assert limits["limits"]["budget"]["amount"] == "25.00"
    assert limits["models"] == ["chat", "cheap*"]

    # Buy credit: Stripe's page is played by the test (its URL leads straight back).
    sessions = mock_checkout(
        stripe_api,
        return_url=f"{base}/billing/success?session_id=cs_test_portal",
        session_id="cs_test_portal",
    )
    before = gw.balance(uid)
    nav(page, "Buy credit")
    screenshot(page, "portal-billing")
    page.get_by_label("Amount in USD").fill("20.00")
    page.get_by_role("button", name="Continue to payment").click()
    page.wait_for_url(f"{base}/portal/billing/success?session_id=cs_test_portal")
    assert sessions.call_count == 1
    expect(page.locator("#balance")).to_have_text(f"${format_usd(before)}")
    screenshot(page, "portal-billing-success")
    paid = deliver(
        gw,
        event(
            "evt_portal_1",
            "checkout.session.completed",
            session(uid, session_id="cs_test_portal", subtotal=2000),
        ),
    )
    assert paid.status_code == 200, paid.text
    nav(page, "Overview")
    assert dollars(page, "#balance") == before + usd("20.00") == gw.balance(uid)
    screenshot(page, "portal-overview")

    # The quick start names this gateway; the account page.
    nav(page, "Quick start")
    expect(page.locator("#snippet-openai")).to_contain_text(
        f'base_url="{gw.settings.public_url}/v1"'
    )
    expect(page.locator("#snippet-claude")).to_contain_text("ANTHROPIC_AUTH_TOKEN")
    screenshot(page, "portal-quickstart")
    nav(page, "Account")
    expect(page.locator("#account-email")).to_have_text(EMAIL)
    screenshot(page, "portal-account")

    # Revoked from the keys page: the SDK gets a 401.
    nav(page, "Keys")
    page.get_by_role("button", name="Revoke laptop").click()
    expect(page.get_by_text("revoked: it no longer works")).to_be_visible()
    with pytest.raises(openai.AuthenticationError):
        sdk.chat.completions.create(model="chat", messages=PROMPT)


def test_log_in_page_low_balance_banner_and_phone_layout(
    gateways: GatewayFactory, page: Page, phone: Page
) -> None:
    gw = portal_gateway(
        gateways, GATEWAY_LOW_BALANCE_WARN="10.00", GATEWAY_LOW_BALANCE_CRITICAL="1.00"
    )
    page.goto(f"{gw.base_url}/portal/keys")
    page.wait_for_url(f"{gw.base_url}/portal/login?next=%2Fportal%2Fkeys")
    screenshot(page, "portal-login")
    nav(page, "Sign up")
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password (8 characters or more)").fill(PASSWORD)
    page.get_by_label("Password again").fill(PASSWORD)
    page.get_by_label("Password again").press("Enter")
    page.wait_for_url(f"{gw.base_url}/portal?welcome=1")
    # $5.00 is below the warning level ($10) and above the critical one ($1).
    expect(page.locator("#low-balance")).to_contain_text("below $10.00")
    uid = user_id_of(gw, EMAIL)
    gw.admin.put(f"/admin/users/{uid}/balance", json={"balance": "0.50", "reason": "test"})
    page.reload()
    expect(page.locator("#low-balance")).to_contain_text("below $1.00")
    expect(page.locator("#low-balance")).to_have_attribute("role", "alert")
    # Log out, then back in through the form: it returns to the page asked for.
    page.get_by_role("button", name="Log out").click()
    page.goto(f"{gw.base_url}/portal/usage")
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{gw.base_url}/portal/usage")
    # A phone: the same overview, readable at 390 px.
    phone.goto(f"{gw.base_url}/portal/login")
    phone.get_by_label("Email").fill(EMAIL)
    phone.get_by_label("Password").fill(PASSWORD)
    phone.get_by_role("button", name="Log in").click()
    phone.wait_for_url(f"{gw.base_url}/portal")
    expect(phone.locator("#balance")).to_have_text("$0.50")
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(phone, "portal-overview-phone")
