"""The portal's defences, over HTTP: CSRF on every POST, another user's keys and usage never
reachable (their key id in URLs and forms), log-in throttling, a password change ending the
other sessions, a new session token at every sign-in, pages closed to anyone signed out."""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Iterator
from datetime import timedelta

import httpx
import openai
import pytest

from gateway.ledger import open_ledger
from gateway.records import WebSession, utcnow
from tests.portal.web import (
    PASSWORD,
    Browsers,
    csrf_of,
    log_in,
    new_key,
    portal_gateway,
    post_form,
    sign_up,
    signed_up,
    user_id_of,
)
from tests.support.gateway import GatewayFactory, RunningGateway

PROMPT = [{"role": "user", "content": "hello"}]


@pytest.fixture
def pgw(gateways: GatewayFactory) -> RunningGateway:
    return portal_gateway(gateways)


@pytest.fixture
def browsers() -> Iterator[Browsers]:
    made = Browsers()
    yield made
    made.close()


def test_every_portal_post_without_the_sessions_csrf_token_is_refused(
    pgw: RunningGateway, browsers: Browsers
) -> None:
    alice = signed_up(browsers, pgw, "alice@example.com")
    key_id, _ = new_key(alice)
    mallory = signed_up(browsers, pgw, "mallory@example.com")
    theirs = csrf_of(mallory.get("/portal").text)
    ours = csrf_of(alice.get("/portal").text)
    posts = {
        "/portal/keys": {"name": "sneaky"},
        f"/portal/keys/{key_id}": {"name": "renamed", "rpm": "1"},
        f"/portal/keys/{key_id}/revoke": {},
        "/portal/account/password": {
            "current_password": PASSWORD,
            "new_password": "x" * 12,
            "confirm": "x" * 12,
        },
        "/portal/billing/checkout": {"amount": "10.00"},
        "/portal/billing/auto-topup": {"enabled": "on", "threshold": "1", "amount": "5"},
        "/portal/logout": {},
        "/portal/login": {"email": "alice@example.com", "password": PASSWORD},
        "/portal/signup": {"email": "new@example.com", "password": PASSWORD, "confirm": PASSWORD},
    }
    for action, data in posts.items():
        for token in (None, "forged", ours[:-1], theirs):
            form = data if token is None else {**data, "csrf_token": token}
            r = alice.post(action, data=form)
            assert r.status_code == 403, (action, token, r.status_code)
            assert "did not come from this site" in r.text
    # Nothing changed: the key is active and unrenamed, no key or user was added, the
    # password is the same, the session still open.
    keys_page = alice.get("/portal/keys")
    assert keys_page.status_code == 200
    assert len(re.findall(r'id="key-key_', keys_page.text)) == 1
    assert "laptop" in keys_page.text
    assert ">active<" in keys_page.text
    assert pgw.admin.get("/admin/users", params={"query": "new@"}).json()["data"] == []
    assert log_in(browsers(pgw), "alice@example.com").status_code == 303


def test_another_users_keys_and_usage_are_never_visible(
    pgw: RunningGateway, browsers: Browsers
) -> None:
    alice = signed_up(browsers, pgw, "alice@example.com")
    bob = signed_up(browsers, pgw, "bob@example.com")
    bob_key_id, bob_key = new_key(bob, "bobs")
    pgw.client(bob_key).chat.completions.create(model="chat", messages=PROMPT)
    bob_id = user_id_of(pgw, "bob@example.com")
    [bob_call] = pgw.wait_usage(bob_id, 1)
    # Alice names Bob's key in every URL and form that takes a key id.
    page = alice.get(f"/portal/keys/{bob_key_id}")
    assert page.status_code == 404
    assert bob_key_id not in page.text
    assert "bobs" not in page.text
    token = csrf_of(alice.get("/portal/keys").text)
    for action, data in (
        (f"/portal/keys/{bob_key_id}", {"name": "mine now", "rpm": "1"}),
        (f"/portal/keys/{bob_key_id}/revoke", {}),
    ):
        r = alice.post(action, data={"csrf_token": token, **data})
        assert r.status_code == 404, action
    for listing in ("/portal/usage", f"/portal/usage?key={bob_key_id}", "/portal", "/portal/keys"):
        shown = alice.get(listing)
        assert shown.status_code == 200, listing
        assert bob_call["request_id"] not in shown.text, listing
        assert "bobs" not in shown.text, listing
        assert "No calls match" in shown.text or listing != f"/portal/usage?key={bob_key_id}"
        if "key=" not in listing:  # where Alice typed it in, the filter form shows it back
            assert bob_key_id not in shown.text, listing
    csv = alice.get("/portal/usage.csv", params={"key": bob_key_id})
    assert csv.status_code == 200
    assert csv.text.count("\n") == 1  # the header alone
    # Bob's key is untouched and still works.
    detail = pgw.admin.get(f"/admin/keys/{bob_key_id}").json()
    assert (detail["name"], detail["revoked_at"], detail["limits"]) == ("bobs", None, None)
    pgw.client(bob_key).chat.completions.create(model="chat", messages=PROMPT)


def test_pages_need_a_signed_in_user(pgw: RunningGateway, browsers: Browsers) -> None:
    anonymous = browsers(pgw)
    for path in (
        "/portal",
        "/portal/keys",
        "/portal/usage",
        "/portal/usage.csv",
        "/portal/billing",
        "/portal/account",
        "/portal/quickstart",
        "/portal/keys/key_0123456789abcdef",
    ):
        r = anonymous.get(path)
        assert r.status_code == 303, path
        assert r.headers["location"].startswith("/portal/login?next=")
    # An operator's dashboard session is not a user's.
    token = "an-operator-session-token-0123456789"
    asyncio.run(operator_session(pgw, token))
    operator = browsers(pgw, cookies={"gateway_session": token})
    assert operator.get("/portal").headers["location"].startswith("/portal/login")


async def operator_session(gw: RunningGateway, token: str) -> None:
    ledger = await open_ledger(gw.settings.database_url)
    try:
        now = utcnow()
        await ledger.sessions.create_session(
            WebSession(
                token_hash=hashlib.sha256(token.encode()).hexdigest(),
                user_id=None,
                csrf_token="csrf",
                created_at=now,
                expires_at=now + timedelta(hours=1),
            )
        )
    finally:
        await ledger.close()


def test_failed_log_ins_are_limited_per_email(pgw: RunningGateway, browsers: Browsers) -> None:
    signed_up(browsers, pgw, "alice@example.com")
    guesser = browsers(pgw)
    for _ in range(5):
        r = log_in(guesser, "alice@example.com", "wrong password")
        assert r.status_code == 401
        assert "wrong email or password" in r.text
    # Locked: the right password from a fresh browser is refused too, with a retry-after.
    r = log_in(browsers(pgw), "alice@example.com")
    assert r.status_code == 429
    assert int(r.headers["retry-after"]) > 0
    assert "too many failed log-ins" in r.text
    assert "gateway_session" not in r.headers.get("set-cookie", "")
    # Another account is not locked by them.
    signed_up(browsers, pgw, "bob@example.com")
    assert log_in(browsers(pgw), "bob@example.com").status_code == 303


def test_a_password_change_ends_the_other_sessions(pgw: RunningGateway, browsers: Browsers) -> None:
    laptop = signed_up(browsers, pgw, "alice@example.com")
    phone = browsers(pgw)
    assert log_in(phone, "alice@example.com").status_code == 303
    assert phone.get("/portal").status_code == 200
    wrong = post_form(
        laptop,
        "/portal/account",
        "/portal/account/password",
        {"current_password": "not it at all", "new_password": "n" * 10, "confirm": "n" * 10},
    )
    assert wrong.status_code == 401
    assert phone.get("/portal").status_code == 200  # a refused change ends nothing
    changed = post_form(
        laptop,
        "/portal/account",
        "/portal/account/password",
        {"current_password": PASSWORD, "new_password": "n" * 10, "confirm": "n" * 10},
    )
    assert changed.status_code == 200, changed.text
    assert "Every other sign-in of this account was ended" in changed.text
    assert phone.get("/portal").status_code == 303
    assert laptop.get("/portal").status_code == 200
    assert log_in(browsers(pgw), "alice@example.com").status_code == 401
    assert log_in(browsers(pgw), "alice@example.com", "n" * 10).status_code == 303


def test_every_sign_in_gets_a_new_session_token(pgw: RunningGateway, browsers: Browsers) -> None:
    planted = "planted-by-an-attacker-0123456789"
    victim = browsers(pgw)
    victim.cookies.set("gateway_session", planted, domain="127.0.0.1", path="/")
    r = sign_up(victim, "alice@example.com")
    assert r.status_code == 303
    first = victim.cookies["gateway_session"]
    assert first != planted
    victim.cookies.set("gateway_session", planted, domain="127.0.0.1", path="/")
    assert victim.get("/portal").status_code == 303  # the planted token signs nobody in
    r = log_in(victim, "alice@example.com")
    assert r.status_code == 303
    assert victim.cookies["gateway_session"] not in (planted, first)
    flags = [h for h in r.headers.get_list("set-cookie") if h.startswith("gateway_session=")]
    assert "httponly" in flags[0].lower()
    assert "samesite=lax" in flags[0].lower()


def test_sign_up_follows_the_setting(gateways: GatewayFactory, browsers: Browsers) -> None:
    closed = gateways.start()  # default: closed
    c = browsers(closed)
    assert "Sign-up is closed" in c.get("/portal/signup").text
    r = c.post(
        "/portal/signup",
        data={
            "csrf_token": csrf_of(c.get("/portal/login").text),
            "email": "a@example.com",
            "password": PASSWORD,
            "confirm": PASSWORD,
        },
    )
    assert r.status_code == 403
    assert closed.admin.get("/admin/users").json()["data"] == []
    invited = gateways.start(GATEWAY_PORTAL_SIGNUP="invite")
    made = invited.admin.post("/admin/invites", json={}).json()
    c = browsers(invited)
    assert sign_up(c, "a@example.com").status_code == 403
    link = made["url"].removeprefix(invited.settings.public_url)
    form = c.get(link)
    assert made["token"] in form.text  # the link fills the code in
    r = c.post(
        "/portal/signup",
        data={
            "csrf_token": csrf_of(form.text),
            "invite": made["token"],
            "email": "a@example.com",
            "password": PASSWORD,
            "confirm": PASSWORD,
        },
    )
    assert r.status_code == 303
    again = browsers(invited)
    form = again.get(link)
    r = again.post(
        "/portal/signup",
        data={
            "csrf_token": csrf_of(form.text),
            "invite": made["token"],
            "email": "b@example.com",
            "password": PASSWORD,
            "confirm": PASSWORD,
        },
    )
    assert r.status_code == 403
    assert "unknown, used, expired" in r.text


def test_a_revoked_key_stops_working(pgw: RunningGateway, browsers: Browsers) -> None:
    alice = signed_up(browsers, pgw, "alice@example.com")
    key_id, key = new_key(alice)
    sdk = pgw.client(key)
    sdk.chat.completions.create(model="chat", messages=PROMPT)
    r = post_form(alice, "/portal/keys", f"/portal/keys/{key_id}/revoke", {})
    assert r.status_code == 303
    with pytest.raises(openai.AuthenticationError) as refused:
        sdk.chat.completions.create(model="chat", messages=PROMPT)
    assert refused.value.status_code == 401
    assert (
        httpx.get(f"{pgw.base_url}/me", headers={"Authorization": f"Bearer {key}"}).status_code
        == 401
    )


def test_reloading_the_new_key_page_creates_no_second_key_nor_shows_the_key_again(
    pgw: RunningGateway, browsers: Browsers
) -> None:
    # The portal helper's note: reloading the page that showed a new key sent the form again.
    alice = signed_up(browsers, pgw, "alice@example.com")
    key_id, key = new_key(alice)
    again = alice.get(f"/portal/keys?created={key_id}")  # a reload of the page shown
    assert again.status_code == 200
    assert key not in again.text
    assert again.text.count('id="key-key_') == 1
    assert "gateway_new_key" not in alice.cookies
