"""The dashboard's defences, over HTTP: CSRF, session fixation, user sessions refused, the
cookie's flags (Secure only behind HTTPS from a trusted proxy), the admin key checked and
kept nowhere, sign-in attempts limited, sign-out, no open redirect."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from gateway.ledger import open_ledger
from gateway.pages.sessions import operator_token_hash
from gateway.records import WebSession, utcnow
from tests.billing.helpers import ledger_rows
from tests.pages.browsing import browser_client, csrf_of, form_id_of, operator, sign_in
from tests.support.gateway import ADMIN_KEY, GatewayFactory, RunningGateway, usd

Clients = Callable[..., httpx.Client]
PLANTED = "planted-by-an-attacker-0123456789"


@pytest.fixture
def new_client(gw: RunningGateway) -> Iterator[Clients]:
    """Makes browser-like clients of ``gw`` (each its own cookie jar; closed at the end)."""
    made: list[httpx.Client] = []

    def make(**kw: Any) -> httpx.Client:
        made.append(browser_client(gw, **kw))
        return made[-1]

    yield make
    for c in made:
        c.close()


def set_cookie(response: httpx.Response, name: str) -> list[str]:
    """The flags of the Set-Cookie header for ``name``, lower-cased."""
    [found] = [h for h in response.headers.get_list("set-cookie") if h.startswith(f"{name}=")]
    return [f.strip().lower() for f in found.split(";")]


def test_a_post_without_the_sessions_csrf_token_is_refused_and_changes_nothing(
    gw: RunningGateway, new_client: Clients
) -> None:
    uid, _ = gw.user("1.00", user_id="alice")
    browser = operator(new_client())
    html = browser.get(f"/dashboard/users/{uid}").text
    token, form_id = csrf_of(html), form_id_of(html)
    other = operator(new_client())
    theirs = csrf_of(other.get(f"/dashboard/users/{uid}").text)
    assert theirs != token
    # None, forged, truncated, and another browser's valid token: none is this session's.
    for form in ({}, {"csrf_token": "forged"}, {"csrf_token": token[:-1]}, {"csrf_token": theirs}):
        r = browser.post(
            f"/dashboard/users/{uid}/credits", data={**form, "amount": "100", "reason": "x"}
        )
        assert r.status_code == 403
        assert "did not come from this site" in r.text
    assert gw.balance(uid) == usd("1.00")
    assert ledger_rows(gw, "SELECT * FROM audit_log WHERE action = 'credits.add'") == []
    r = browser.post(
        f"/dashboard/users/{uid}/credits",
        data={"csrf_token": token, "form_id": form_id, "amount": "2", "reason": "ok"},
    )
    assert r.status_code == 303
    assert gw.balance(uid) == usd("3.00")


def test_the_sign_in_form_needs_its_csrf_token_too(new_client: Clients) -> None:
    browser = new_client()
    browser.get("/dashboard/login")
    r = browser.post("/dashboard/login", data={"admin_key": ADMIN_KEY, "csrf_token": "guess"})
    assert r.status_code == 403
    assert "gateway_session" not in r.cookies


def test_a_session_token_planted_before_sign_in_is_not_the_one_after(
    new_client: Clients,
) -> None:
    browser = new_client()
    browser.cookies.set("gateway_session", PLANTED, domain="127.0.0.1")
    r = sign_in(browser)
    assert r.status_code == 303
    issued = r.cookies["gateway_session"]
    assert issued != PLANTED
    attacker = new_client()
    attacker.cookies.set("gateway_session", PLANTED, domain="127.0.0.1")
    assert attacker.get("/dashboard").status_code == 303
    # Signing in again with a session open issues another token and ends the first.
    # (The sign-in page itself sends a signed-in operator on; the form is posted directly.)
    token = csrf_of(browser.get("/dashboard").text)
    again = browser.post("/dashboard/login", data={"csrf_token": token, "admin_key": ADMIN_KEY})
    assert again.status_code == 303
    assert again.cookies["gateway_session"] != issued
    stale = new_client()
    stale.cookies.set("gateway_session", issued, domain="127.0.0.1")
    assert stale.get("/dashboard").status_code == 303
    assert browser.get("/dashboard").status_code == 200


def plant(gw: RunningGateway, token: str, user_id: str | None, *, hashed: str = "") -> None:
    """Stores a session for ``token`` straight in the database (its SHA-256 unless
    ``hashed``), as the code before this one or another writer would have."""

    async def write() -> None:
        ledger = await open_ledger(gw.settings.database_url)
        try:
            now = utcnow()
            await ledger.sessions.create_session(
                WebSession(
                    token_hash=hashed or hashlib.sha256(token.encode()).hexdigest(),
                    user_id=user_id,
                    csrf_token="user-csrf",
                    created_at=now,
                    expires_at=now.replace(year=now.year + 1),
                )
            )
        finally:
            await ledger.close()

    asyncio.run(write())


def test_a_portal_users_session_is_refused_on_every_dashboard_page(
    gw: RunningGateway, new_client: Clients
) -> None:
    uid, _ = gw.user("1.00", user_id="alice")
    token = "a-user-session-token-0123456789abcdef"
    plant(gw, token, uid)
    user = new_client()
    user.cookies.set("gateway_session", token, domain="127.0.0.1")
    pages = ["", "/users", f"/users/{uid}", "/audit", "/payments", "/prices"]
    for path in pages:
        r = user.get(f"/dashboard{path}")
        assert r.status_code == 403, path
        assert "needs the operator" in r.text
    r = user.post(
        f"/dashboard/users/{uid}/credits",
        data={"csrf_token": "user-csrf", "amount": "100", "reason": "mine"},
    )
    assert r.status_code == 403
    assert gw.balance(uid) == usd("1.00")


def test_the_session_cookie_is_httponly_lax_and_holds_no_admin_key(
    gw: RunningGateway, new_client: Clients
) -> None:
    r = sign_in(new_client())
    flags = set_cookie(r, "gateway_session")
    assert "httponly" in flags
    assert "samesite=lax" in flags
    assert "path=/" in flags
    assert f"max-age={7 * 86400}" in flags
    assert "secure" not in flags  # plain http: a Secure cookie would never come back
    token = r.cookies["gateway_session"]
    assert token != ADMIN_KEY
    [row] = ledger_rows(gw, "SELECT * FROM web_sessions")
    # Keyed by the admin key in force (so rotating the key ends it), which is stored nowhere.
    assert row["token_hash"] == operator_token_hash(token, ADMIN_KEY)
    assert row["token_hash"] != hashlib.sha256(token.encode()).hexdigest()
    assert row["user_id"] is None
    assert token not in str(row)
    assert ADMIN_KEY not in str(row)
    # The sign-in form's CSRF cookie has the same flags.
    csrf = set_cookie(new_client().get("/dashboard/login"), "gateway_csrf")
    assert "httponly" in csrf
    assert "samesite=lax" in csrf


def test_behind_an_https_proxy_the_cookies_are_secure(new_client: Clients) -> None:
    # uvicorn trusts X-Forwarded-Proto from 127.0.0.1 (its FORWARDED_ALLOW_IPS default).
    browser = new_client(headers={"X-Forwarded-Proto": "https"})
    form = browser.get("/dashboard/login")
    assert "secure" in set_cookie(form, "gateway_csrf")
    # httpx keeps a Secure cookie off plain http, as a browser would: sent by hand here.
    r = browser.post(
        "/dashboard/login",
        data={"csrf_token": csrf_of(form.text), "admin_key": ADMIN_KEY, "next": "/dashboard"},
        headers={"cookie": f"gateway_csrf={form.cookies['gateway_csrf']}"},
    )
    assert r.status_code == 303
    assert "secure" in set_cookie(r, "gateway_session")


def test_a_forwarded_proto_from_an_untrusted_client_is_ignored(
    gateways: GatewayFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "192.0.2.1")
    gw = gateways.start()
    with browser_client(gw, headers={"X-Forwarded-Proto": "https"}) as browser:
        form = browser.get("/dashboard/login")
    assert "secure" not in set_cookie(form, "gateway_csrf")


def test_a_wrong_admin_key_is_refused_and_attempts_are_limited(
    gw: RunningGateway, new_client: Clients
) -> None:
    _, user_key = gw.user("1.00")
    browser = new_client()
    for key in ("wrong", user_key, "", "test-admin-ke", ADMIN_KEY + "x"):
        r = sign_in(browser, key)
        assert r.status_code == 401, key
        assert "not the admin key" in r.text
        assert "gateway_session" not in r.cookies
    # Five failures: even the right key now waits.
    r = sign_in(browser)
    assert r.status_code == 429
    assert int(r.headers["retry-after"]) > 800
    assert "Too many failed sign-ins" in r.text
    assert "gateway_session" not in r.cookies
    assert ledger_rows(gw, "SELECT * FROM web_sessions") == []


def test_signing_out_ends_the_session(gw: RunningGateway, new_client: Clients) -> None:
    browser = operator(new_client())
    token = browser.cookies["gateway_session"]
    page = browser.get("/dashboard")
    assert page.status_code == 200
    r = browser.post("/dashboard/logout", data={"csrf_token": csrf_of(page.text)})
    assert r.status_code == 303
    assert r.headers["location"] == "/dashboard/login"
    assert ledger_rows(gw, "SELECT * FROM web_sessions") == []
    replayed = new_client()
    replayed.cookies.set("gateway_session", token, domain="127.0.0.1")
    assert replayed.get("/dashboard").status_code == 303


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil"])
def test_sign_in_never_redirects_to_another_site(new_client: Clients, target: str) -> None:
    r = sign_in(new_client(), next_=target)
    assert r.status_code == 303
    assert r.headers["location"] == "/dashboard"


def test_pages_forbid_framing_and_load_nothing_from_elsewhere(new_client: Clients) -> None:
    r = operator(new_client()).get("/dashboard")
    csp = r.headers["content-security-policy"]
    assert "default-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert r.headers["x-frame-options"] == "DENY"
    assert "://" not in r.text


def test_without_a_session_a_page_asks_for_sign_in_and_a_form_changes_nothing(
    gw: RunningGateway, new_client: Clients
) -> None:
    gw.user("1.00", user_id="alice")
    stranger = new_client()
    r = stranger.get("/dashboard/users/alice?cursor=x")
    assert r.status_code == 303
    assert (
        r.headers["location"] == "/dashboard/login?next=%2Fdashboard%2Fusers%2Falice%3Fcursor%3Dx"
    )
    token = csrf_of(stranger.get("/dashboard/login").text)
    r = stranger.post(
        "/dashboard/users/alice/credits",
        data={"csrf_token": token, "amount": "100", "reason": "free money"},
    )
    assert r.status_code == 303
    assert r.headers["location"] == "/dashboard/login"
    assert gw.balance("alice") == usd("1.00")


def test_rotating_the_admin_key_ends_every_operator_session(gateways: GatewayFactory) -> None:
    old = gateways.start()
    old.user("1.00", user_id="alice")
    with browser_client(old) as browser:
        operator(browser)
        token = browser.cookies["gateway_session"]
        csrf = csrf_of(browser.get("/dashboard/users/alice").text)
    old.stop()
    rotated = gateways.start(GATEWAY_ADMIN_KEY="a-brand-new-admin-key")
    with browser_client(rotated) as stale:
        stale.cookies.set("gateway_session", token, domain="127.0.0.1")
        r = stale.get("/dashboard/users")
        assert r.status_code == 303
        assert r.headers["location"].startswith("/dashboard/login")
        r = stale.post(
            "/dashboard/users/alice/credits",
            data={"csrf_token": csrf, "amount": "100", "reason": "old session"},
        )
        assert r.status_code == 303
        assert r.headers["location"] == "/dashboard/login"
        # The new key signs in; the old one no longer does.
        assert sign_in(stale, "a-brand-new-admin-key").status_code == 303
        assert stale.get("/dashboard/users").status_code == 200
    with browser_client(rotated) as again:
        assert sign_in(again).status_code == 401
    [row] = ledger_rows(rotated, "SELECT balance FROM users WHERE id = 'alice'")
    assert row["balance"] == usd("1.00")


def test_an_operator_session_stored_without_the_key_binding_signs_nobody_in(
    gw: RunningGateway, new_client: Clients
) -> None:
    # What a session opened before sessions were bound to the admin key looks like.
    token = "an-operator-session-token-0123456789"
    plant(gw, token, None)
    old = new_client()
    old.cookies.set("gateway_session", token, domain="127.0.0.1")
    assert old.get("/dashboard").status_code == 303
    # Bound to the key in force, the same token is an operator's.
    plant(gw, "bound-" + token, None, hashed=operator_token_hash("bound-" + token, ADMIN_KEY))
    bound = new_client()
    bound.cookies.set("gateway_session", "bound-" + token, domain="127.0.0.1")
    assert bound.get("/dashboard").status_code == 200


def test_sign_out_everywhere_ends_every_operator_session_and_no_users(
    gw: RunningGateway, new_client: Clients
) -> None:
    uid, _ = gw.user("1.00", user_id="alice")
    plant(gw, "a-user-session-token-0123456789abcdef", uid)
    laptop, phone = operator(new_client()), operator(new_client())
    page = phone.get("/dashboard")
    assert "Sign out everywhere" in page.text
    r = phone.post("/dashboard/logout-everywhere", data={"csrf_token": "forged"})
    assert r.status_code == 403
    assert laptop.get("/dashboard").status_code == 200
    r = phone.post("/dashboard/logout-everywhere", data={"csrf_token": csrf_of(page.text)})
    assert r.status_code == 303
    assert r.headers["location"] == "/dashboard/login"
    assert laptop.get("/dashboard").status_code == 303
    assert phone.get("/dashboard").status_code == 303
    [left] = ledger_rows(gw, "SELECT user_id FROM web_sessions")
    assert left["user_id"] == uid
    [event] = ledger_rows(gw, "SELECT * FROM audit_log WHERE action = 'dashboard.sign_out_all'")
    assert event["actor"] == "admin:dashboard"
