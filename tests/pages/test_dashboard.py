"""The operator dashboard in a real headless chromium: sign in with the admin key, the
revenue chart after a real call, credit a user with a reason and find it in the audit log,
the user's balance on the page equal to the ledger's. Each page's screenshot is written to
docs/screenshots/."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from gateway.money import format_usd
from tests.pages.browsing import ledger_rows, sign_in_page
from tests.pages.conftest import screenshot
from tests.support.gateway import ADMIN_KEY, RunningGateway, usd


def ledger_balance(gw: RunningGateway, user_id: str) -> int:
    [row] = ledger_rows(gw, "SELECT balance FROM users WHERE id = ?", user_id)
    return int(row["balance"])


def test_the_operator_signs_in_sees_revenue_credits_a_user_and_finds_it_in_the_audit_log(
    gw: RunningGateway, page: Page
) -> None:
    uid, key = gw.user("5.00", user_id="alice")
    reply = gw.client(key).chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "hello"}], max_tokens=20
    )
    assert reply.choices[0].message.content
    [row] = gw.wait_usage(uid, 1)
    cost = usd(row["cost"])
    assert cost > 0

    # Not signed in: the dashboard sends the browser to the sign-in form, and back after it.
    page.goto(f"{gw.base_url}/dashboard/users")
    expect(page).to_have_url(re.compile(r"/dashboard/login\?next=%2Fdashboard%2Fusers$"))
    screenshot(page, "dashboard-login")
    page.get_by_label("Admin key").fill(ADMIN_KEY)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{gw.base_url}/dashboard/users")

    page.get_by_role("link", name="Revenue").click()
    expect(page.locator("#total-revenue")).to_have_text(f"${format_usd(cost)}")
    bars = page.locator("svg.chart rect.bar")
    expect(bars).to_have_count(30)
    today = bars.last.locator("title").text_content()
    assert today is not None
    assert today.endswith(f": {format_usd(cost)} USD")
    expect(page.get_by_role("img", name="Revenue per day (UTC)")).to_be_visible()
    expect(page.locator("#by-model ~ .table-wrap")).to_contain_text("mock:chat")
    screenshot(page, "dashboard-revenue")

    # Top users -> alice's page: her balance is the ledger's.
    page.get_by_role("link", name="alice").first.click()
    expect(page).to_have_url(f"{gw.base_url}/dashboard/users/alice")
    before = ledger_balance(gw, uid)
    expect(page.locator("#balance")).to_have_text(f"${format_usd(before)}")
    expect(page.locator("#usage-h ~ .table-wrap")).to_contain_text("chat")

    page.get_by_label("Amount (USD)").fill("2.50")
    page.get_by_label("Reason", exact=True).first.fill("support goodwill")
    page.get_by_role("button", name="Add credit").click()
    expect(page.get_by_role("status")).to_have_text("Credit added.")
    after = ledger_balance(gw, uid)
    assert after == before + usd("2.50")
    expect(page.locator("#balance")).to_have_text(f"${format_usd(after)}")
    assert gw.balance(uid) == after
    screenshot(page, "dashboard-user")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Audit log").click()
    page.get_by_label("Action").select_option("credits.add")
    page.get_by_role("button", name="Filter").click()
    credit = page.locator("#audit tbody tr").first
    expect(credit).to_contain_text("admin:dashboard")
    expect(credit).to_contain_text("alice")
    expect(credit).to_contain_text("2.50")
    expect(credit).to_contain_text("support goodwill")
    expect(page.locator("#audit tbody tr")).to_have_count(1)
    screenshot(page, "dashboard-audit")


def test_every_page_renders_for_the_screenshots_on_a_desktop_and_a_phone(
    gw: RunningGateway, page: Page, phone: Page
) -> None:
    for user_id, credit in (("alice", "12.00"), ("bob", "3.50"), ("carol", "0.40")):
        _, key = gw.user(credit, user_id=user_id)
        gw.client(key).chat.completions.create(
            model="cheap", messages=[{"role": "user", "content": "hi"}], max_tokens=10
        )
    gw.wait_usage("carol", 1)
    sign_in_page(page, gw)
    page.goto(f"{gw.base_url}/dashboard/users")
    expect(page.locator("tbody tr")).to_have_count(3)
    screenshot(page, "dashboard-users")
    page.goto(f"{gw.base_url}/dashboard/prices")
    expect(page.locator("tbody")).to_contain_text("cheap")
    screenshot(page, "dashboard-prices")
    page.goto(f"{gw.base_url}/dashboard/payments")
    expect(page.get_by_role("heading", name="Paid, no user to credit (0)")).to_be_visible()
    screenshot(page, "dashboard-payments")

    sign_in_page(phone, gw)
    # Nothing sideways on a phone: the page is no wider than the screen.
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= 390
    screenshot(phone, "dashboard-revenue-phone")
    phone.goto(f"{gw.base_url}/dashboard/users/alice")
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(phone, "dashboard-user-phone")


def test_the_dashboard_is_usable_by_keyboard(gw: RunningGateway, page: Page) -> None:
    page.goto(f"{gw.base_url}/dashboard/login")
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.get_by_label("Admin key")).to_be_focused()
    page.keyboard.type(ADMIN_KEY)
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{gw.base_url}/dashboard")
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Revenue")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Users")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{gw.base_url}/dashboard/users")
