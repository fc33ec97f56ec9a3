"""Helpers of the portal's page tests: a portal gateway, browser-like HTTP clients signed up or
logged in, the CSRF token of a page, and Stripe's API mocked as tests/billing does."""

from __future__ import annotations

import re
from typing import Any

import httpx
import respx

from tests.billing.helpers import STRIPE, STRIPE_KEY, WEBHOOK_SECRET
from tests.support.gateway import GatewayFactory, RunningGateway

PASSWORD = "a long enough password"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def portal_gateway(gateways: GatewayFactory, **env: str) -> RunningGateway:
    """A gateway with open sign-up, $5.00 of welcome credit and payments configured."""
    return gateways.start(
        GATEWAY_PORTAL_SIGNUP="open",
        GATEWAY_PORTAL_WELCOME_CREDIT="5.00",
        STRIPE_API_KEY=STRIPE_KEY,
        STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
        GATEWAY_CHECKOUT_MIN="1.00",
        **env,
    )


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "the page has no form with a csrf_token"
    return found.group(1)


class Browsers:
    """Makes clients that keep cookies like a browser and show each redirect, one cookie jar
    each; ``close`` closes them all (an unclosed client warns when collected)."""

    def __init__(self) -> None:
        self.made: list[httpx.Client] = []

    def __call__(self, gw: RunningGateway, **kw: Any) -> httpx.Client:
        made = httpx.Client(base_url=gw.base_url, follow_redirects=False, timeout=30, **kw)
        self.made.append(made)
        return made

    def close(self) -> None:
        for made in self.made:
            made.close()


def post_form(c: httpx.Client, page: str, action: str, data: dict[str, str]) -> httpx.Response:
    """Opens ``page`` for its CSRF token, then posts ``data`` to ``action`` with it."""
    opened = c.get(page)
    assert opened.status_code == 200, opened.text
    return c.post(action, data={"csrf_token": csrf_of(opened.text), **data})


def sign_up(c: httpx.Client, email: str, password: str = PASSWORD) -> httpx.Response:
    return post_form(
        c,
        "/portal/signup",
        "/portal/signup",
        {"email": email, "password": password, "confirm": password},
    )


def log_in(c: httpx.Client, email: str, password: str = PASSWORD) -> httpx.Response:
    return post_form(c, "/portal/login", "/portal/login", {"email": email, "password": password})


def signed_up(browsers: Browsers, gw: RunningGateway, email: str) -> httpx.Client:
    c = browsers(gw)
    r = sign_up(c, email)
    assert r.status_code == 303, r.text
    return c


def user_id_of(gw: RunningGateway, email: str) -> str:
    found = gw.admin.get("/admin/users", params={"query": email}).json()["data"]
    assert len(found) == 1, found
    return str(found[0]["id"])


def new_key(c: httpx.Client, name: str = "laptop") -> tuple[str, str]:
    """(key id, key) of a key created on the keys page."""
    posted = post_form(c, "/portal/keys", "/portal/keys", {"name": name})
    assert posted.status_code == 303, posted.text
    r = c.get(posted.headers["location"])  # the key is shown on the page it redirects to
    key = re.search(r'id="new-key"[^>]*>([^<]+)<', r.text)
    key_id = re.findall(r'id="key-(key_[0-9a-f]+)"', r.text)
    assert key
    assert key_id
    return key_id[0], key.group(1)


def mock_checkout(api: respx.MockRouter, *, return_url: str, session_id: str) -> respx.Route:
    """Stripe's customer and Checkout Session calls; the session's page is ``return_url``
    (the test plays the customer who paid and came back)."""
    api.post(f"{STRIPE}/v1/customers").respond(200, json={"id": "cus_portal", "object": "customer"})
    return api.post(f"{STRIPE}/v1/checkout/sessions").respond(
        200, json={"id": session_id, "object": "checkout.session", "url": return_url}
    )
