"""The dashboard in production mode (PostgreSQL ledger, Redis balances) in chromium: the
operator's session lives in PostgreSQL, a credit made on the page lands in both the ledger
and the balance store, and the page shows the ledger's balance."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from gateway.money import format_usd
from tests.pages.browsing import ledger_rows, sign_in_page
from tests.support.gateway import GatewayFactory, usd

pytestmark = pytest.mark.production


def test_a_credit_on_the_page_lands_in_postgresql_and_redis(
    gateways: GatewayFactory, pg_dsn: str, redis_url: str, page: Page
) -> None:
    gw = gateways.start(GATEWAY_DATABASE_URL=pg_dsn, GATEWAY_REDIS_URL=redis_url)
    uid, key = gw.user("5.00", user_id="alice")
    gw.client(key).chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "hello"}], max_tokens=20
    )
    [call] = gw.wait_usage(uid, 1)
    sign_in_page(page, gw)
    [session] = ledger_rows(gw, "SELECT user_id FROM web_sessions")
    assert session["user_id"] is None
    expect(page.locator("#total-revenue")).to_have_text(f"${format_usd(usd(call['cost']))}")

    page.goto(f"{gw.base_url}/dashboard/users/alice")
    page.get_by_label("Amount (USD)").fill("1.25")
    page.get_by_label("Reason", exact=True).first.fill("production check")
    page.get_by_role("button", name="Add credit").click()
    expect(page.get_by_role("status")).to_have_text("Credit added.")
    [row] = ledger_rows(gw, "SELECT balance FROM users WHERE id = ?", uid)
    assert row["balance"] == usd("5.00") - usd(call["cost"]) + usd("1.25")
    assert gw.balance(uid) == row["balance"]
    expect(page.locator("#balance")).to_have_text(f"${format_usd(row['balance'])}")
