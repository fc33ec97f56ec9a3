"""The dashboard in chromium on a phone (390 px) and a desktop: every table's cells stay on
the screen (rows become cards), chart labels are readable on the phone and not oversized on
the desktop, the key column shows prefix and id apart, and revoking a key or disabling a user
asks first: in the browser with the page's script (keyboard too), with a confirm page
without it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Dialog, Page, expect

from tests.billing.helpers import STRIPE_KEY, WEBHOOK_SECRET, deliver, event, session
from tests.pages.browsing import sign_in_page
from tests.pages.conftest import PHONE, screenshot
from tests.support.gateway import GatewayFactory, RunningGateway

OFF_SCREEN = """() => Array.from(document.querySelectorAll("main td, main th"))
  .filter((c) => c.getClientRects().length && c.getBoundingClientRect().width > 0)
  .filter((c) => !c.closest("thead")
              || getComputedStyle(c.closest("thead")).position !== "absolute")
  .filter((c) => c.getBoundingClientRect().right > window.innerWidth + 0.5
              || c.getBoundingClientRect().left < -0.5)
  .map((c) => c.textContent.trim().slice(0, 40))"""
LABEL_HEIGHTS = """() => Array.from(document.querySelectorAll("svg.chart text.axis"))
  .filter((t) => getComputedStyle(t).display !== "none")
  .map((t) => t.getBoundingClientRect().height)"""


@pytest.fixture
def busy(gateways: GatewayFactory) -> RunningGateway:
    """A gateway with users, calls, keys, audit events and a payment in another currency."""
    gw = gateways.start(STRIPE_API_KEY=STRIPE_KEY, STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET)
    for user_id, credit in (("alice-with-a-rather-long-id", "12.00"), ("bob", "3.50")):
        _, key = gw.user(credit, user_id=user_id)
        gw.client(key).chat.completions.create(
            model="cheap", messages=[{"role": "user", "content": "hi"}], max_tokens=10
        )
    gw.wait_usage("bob", 1)
    gw.admin.patch("/admin/users/bob", json={"limits": {"rpm": 30, "tpm": 1000}})
    paid = event("evt_eur_phone", "checkout.session.completed", session("bob", currency="eur"))
    deliver(gw, paid)
    return gw


@pytest.fixture
def no_script(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport=PHONE, java_script_enabled=False)  # type: ignore[arg-type]
    context.set_default_timeout(15_000)
    try:
        yield context.new_page()
    finally:
        context.close()


PAGES = [
    "/dashboard",
    "/dashboard/users",
    "/dashboard/users/alice-with-a-rather-long-id",
    "/dashboard/audit",
    "/dashboard/payments",
    "/dashboard/prices",
]


def test_on_a_phone_no_table_cell_is_cut_off(busy: RunningGateway, phone: Page) -> None:
    sign_in_page(phone, busy)
    for path in PAGES:
        phone.goto(f"{busy.base_url}{path}")
        assert phone.evaluate(OFF_SCREEN) == [], path
        assert phone.evaluate("document.documentElement.scrollWidth") <= 390, path
    phone.goto(f"{busy.base_url}/dashboard/users/alice-with-a-rather-long-id")
    # Each cell is named by its column in the card it became.
    usage = phone.locator("#usage tbody tr").first
    expect(usage.locator('td[data-label="Cost (USD)"]')).to_be_visible()
    screenshot(phone, "dashboard-user-phone")
    phone.goto(f"{busy.base_url}/dashboard/audit")
    screenshot(phone, "dashboard-audit-phone")


def test_chart_labels_are_readable_on_a_phone_and_not_oversized_on_a_desktop(
    busy: RunningGateway, phone: Page, page: Page
) -> None:
    sign_in_page(phone, busy)
    sign_in_page(page, busy)
    small = phone.evaluate(LABEL_HEIGHTS)
    large = page.evaluate(LABEL_HEIGHTS)
    assert small
    assert large
    assert min(small) >= 11, small  # was ~7 px
    assert max(large) <= 20, large  # was ~24 px at 1280 px


def test_the_key_column_shows_prefix_and_id_apart(busy: RunningGateway, page: Page) -> None:
    sign_in_page(page, busy)
    page.goto(f"{busy.base_url}/dashboard/users/bob")
    cell = page.locator("#keys tbody tr").first.locator("td").first
    prefix = cell.locator(".prefix").bounding_box()
    key_id = cell.locator(".key-id").bounding_box()
    assert prefix is not None
    assert key_id is not None
    assert key_id["y"] >= prefix["y"] + prefix["height"] - 1  # on its own line
    expect(cell.locator(".key-id")).to_contain_text("id key_")


def test_revoking_a_key_asks_first_in_the_browser_by_keyboard(
    busy: RunningGateway, page: Page
) -> None:
    sign_in_page(page, busy)
    page.goto(f"{busy.base_url}/dashboard/users/bob")
    asked: list[str] = []

    def answer(accept: bool) -> None:
        def handle(dialog: Dialog) -> None:
            asked.append(dialog.message)
            if accept:
                dialog.accept()
            else:
                dialog.dismiss()

        page.once("dialog", handle)

    revoke = page.get_by_role("button", name="Revoke key")
    answer(False)
    revoke.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_text("active")).to_be_visible()
    assert asked
    assert "Revoke key sk-" in asked[0]
    answer(True)
    revoke.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_have_text("Key revoked.")
    assert len(asked) == 2


def test_disabling_a_user_without_the_script_asks_on_a_page(
    busy: RunningGateway, no_script: Page
) -> None:
    sign_in_page(no_script, busy)
    no_script.goto(f"{busy.base_url}/dashboard/users/bob")
    no_script.get_by_role("button", name="Disable user").click()
    expect(no_script.get_by_role("heading", name="Disable user bob?")).to_be_visible()
    no_script.get_by_role("link", name="Cancel").click()
    expect(no_script.get_by_role("button", name="Disable user")).to_be_visible()
    assert busy.admin.get("/admin/users/bob").json()["disabled"] is False
    no_script.get_by_role("button", name="Disable user").click()
    confirm = no_script.get_by_role("button", name="Disable user")
    expect(confirm).to_be_focused()
    no_script.keyboard.press("Enter")
    expect(no_script.get_by_role("status")).to_contain_text("User disabled")
    assert busy.admin.get("/admin/users/bob").json()["disabled"] is True


def test_audit_details_keep_rows_short(busy: RunningGateway, page: Page) -> None:
    sign_in_page(page, busy)
    page.goto(f"{busy.base_url}/dashboard/audit?action=price.set")
    heights = page.evaluate(
        """() => Array.from(document.querySelectorAll("#audit tbody tr"))
        .map((r) => r.getBoundingClientRect().height)"""
    )
    assert len(heights) >= 4  # one per model of models.yaml, recorded at start
    assert max(heights) <= 160, heights  # was ~1,600 px of JSON per price event
    expect(page.locator("#audit details").first).to_be_visible()
