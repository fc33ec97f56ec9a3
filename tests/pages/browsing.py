"""Helpers of the dashboard tests: signing the operator in, over HTTP (httpx) or in the
browser, and reading the CSRF token from a page."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from playwright.sync_api import Page

from tests.billing.helpers import ledger_rows as billing_rows
from tests.support.gateway import ADMIN_KEY, RunningGateway

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
FORM_ID = re.compile(r'name="form_id" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "the page has no form with a csrf_token"
    return found.group(1)


def form_id_of(html: str) -> str:
    """The one-time id of the page's money forms (their idempotency reference)."""
    found = FORM_ID.search(html)
    assert found, "the page has no money form"
    return found.group(1)


def browser_client(gw: RunningGateway, **kw: Any) -> httpx.Client:
    """A client that keeps cookies like a browser and shows each redirect."""
    return httpx.Client(base_url=gw.base_url, follow_redirects=False, timeout=30, **kw)


def sign_in(
    client: httpx.Client, key: str = ADMIN_KEY, *, next_: str = "/dashboard"
) -> httpx.Response:
    """Opens the sign-in page (for its CSRF token and cookie) and posts ``key``."""
    form = client.get("/dashboard/login")
    assert form.status_code == 200, form.text
    return client.post(
        "/dashboard/login",
        data={"csrf_token": csrf_of(form.text), "admin_key": key, "next": next_},
    )


def operator(client: httpx.Client) -> httpx.Client:
    """``client`` signed in as the operator."""
    r = sign_in(client)
    assert r.status_code == 303, r.text
    return client


def sign_in_page(page: Page, gw: RunningGateway, key: str = ADMIN_KEY) -> None:
    """Signs the operator in from the sign-in form, in the browser, by keyboard."""
    page.goto(f"{gw.base_url}/dashboard/login")
    page.get_by_label("Admin key").fill(key)
    page.get_by_label("Admin key").press("Enter")
    page.wait_for_url(f"{gw.base_url}/dashboard")


def ledger_rows(gw: RunningGateway, sql: str, *params: Any) -> list[dict[str, Any]]:
    """tests.billing.helpers.ledger_rows from another thread: while Playwright's sync API is
    active its event loop counts as running on this one, so asyncio.run (PostgreSQL) fails
    here."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(billing_rows, gw, sql, *params).result()
