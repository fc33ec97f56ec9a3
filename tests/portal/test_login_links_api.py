"""An operator gives an existing user a portal login with a one-time link (admin API, CLI),
in closed sign-up too: the link's page sets the user's email and password (no new user, no
welcome credit), works once, and resets a forgotten password, signing out every browser."""

from __future__ import annotations

import hashlib
import re
import sqlite3
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from gateway import cli
from tests.portal.web import PASSWORD, Browsers, csrf_of, log_in, portal_gateway, signed_up
from tests.support.gateway import ADMIN_KEY, GatewayFactory, RunningGateway

NEW_PASSWORD = "a brand new password"


@pytest.fixture
def browsers() -> Iterator[Browsers]:
    made = Browsers()
    yield made
    made.close()


def set_login(
    c: httpx.Client, url: str, email: str, password: str, confirm: str | None = None
) -> httpx.Response:
    opened = c.get(url)
    assert opened.status_code == 200, opened.text
    token = re.search(r'name="token" value="([^"]+)"', opened.text)
    assert token
    return c.post(
        "/portal/set-password",
        data={
            "csrf_token": csrf_of(opened.text),
            "token": token.group(1),
            "email": email,
            "password": password,
            "confirm": password if confirm is None else confirm,
        },
    )


def path_of(url: str, gw: RunningGateway) -> str:
    assert url.startswith(gw.settings.public_url), url
    return url.removeprefix(gw.settings.public_url.rstrip("/"))


def test_a_closed_gateway_gives_an_existing_user_a_login_with_a_link(
    gateways: GatewayFactory, browsers: Browsers
) -> None:
    gw = gateways.start(
        GATEWAY_PUBLIC_URL="https://gw.example.com", GATEWAY_PORTAL_WELCOME_CREDIT="2.00"
    )
    made = gw.admin.post(
        "/admin/users",
        json={"id": "carol", "email": "carol@example.com", "initial_credit": "10.00"},
    )
    assert made.status_code == 201, made.text
    r = gw.admin.post("/admin/users/carol/login-link", json={"expires_in_hours": 24})
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["user_id"], body["email"], body["has_login"]) == (
        "carol",
        "carol@example.com",
        False,
    )
    assert body["url"] == f"https://gw.example.com/portal/set-password?token={body['token']}"
    url = path_of(body["url"], gw)
    c = browsers(gw)
    page = c.get(url)
    assert 'value="carol@example.com"' in page.text
    # Refusals are shown beside their field and change nothing.
    differ = set_login(c, url, "carol@example.com", NEW_PASSWORD, confirm="something else")
    assert differ.status_code == 422
    assert 'id="confirm-error"' in differ.text
    assert 'aria-invalid="true" aria-describedby="confirm-error"' in differ.text
    bad = set_login(c, url, '"><script>@x.example', NEW_PASSWORD)
    assert bad.status_code == 422
    assert 'id="email-error"' in bad.text
    assert "<script>" not in bad.text
    done = set_login(c, url, "Carol@Example.com", NEW_PASSWORD)
    assert done.status_code == 303, done.text
    assert done.headers["location"] == "/portal?login_set=1"
    overview = c.get("/portal?login_set=1")
    assert "Your email and password are set" in overview.text
    assert '<div class="value" id="balance">$10.00</div>' in overview.text
    # The same user: no second account, no welcome credit.
    found = gw.admin.get("/admin/users", params={"query": "carol"}).json()["data"]
    assert [u["id"] for u in found] == ["carol"]
    entries = gw.admin.get("/admin/users/carol/entries").json()["data"]
    assert [e["kind"] for e in entries] == ["grant"]
    assert entries[0]["amount"] == "10.00"
    # The link worked once.
    again = browsers(gw).get(url)
    assert again.status_code == 403
    assert "ask the operator for a new one" in again.text
    assert log_in(browsers(gw), "carol@example.com", NEW_PASSWORD).status_code == 303
    # Stored hashed; both steps audited.
    path = gw.settings.database_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        (stored,) = db.execute("SELECT token_hash FROM portal_login_links").fetchone()
        dump = "\n".join(db.iterdump())
    assert stored == hashlib.sha256(body["token"].encode()).hexdigest()
    assert body["token"] not in dump
    audit = gw.admin.get("/admin/audit", params={"user": "carol"}).json()["data"]
    actions = [e["action"] for e in audit]
    assert "login_link.create" in actions
    assert "login.set" in actions


def test_the_link_resets_a_forgotten_password_and_signs_out_every_browser(
    gateways: GatewayFactory, browsers: Browsers
) -> None:
    gw = portal_gateway(gateways)
    old_browser = signed_up(browsers, gw, "dora@example.com")
    assert old_browser.get("/portal").status_code == 200
    uid = gw.admin.get("/admin/users", params={"query": "dora"}).json()["data"][0]["id"]
    first = gw.admin.post(f"/admin/users/{uid}/login-link", json={}).json()
    second = gw.admin.post(f"/admin/users/{uid}/login-link", json={}).json()
    assert second["has_login"] is True
    # The newer link replaced the older one.
    assert browsers(gw).get(path_of(first["url"], gw)).status_code == 403
    c = browsers(gw)
    assert "replaces your password" in c.get(path_of(second["url"], gw)).text
    done = set_login(c, path_of(second["url"], gw), "dora@example.com", NEW_PASSWORD)
    assert done.status_code == 303, done.text
    assert old_browser.get("/portal").status_code == 303  # signed out
    assert c.get("/portal").status_code == 200
    assert log_in(browsers(gw), "dora@example.com", PASSWORD).status_code == 401
    assert log_in(browsers(gw), "dora@example.com", NEW_PASSWORD).status_code == 303
    users = gw.admin.get("/admin/users", params={"query": "dora"}).json()["data"]
    assert len(users) == 1
    assert users[0]["balance"] == "5.00"  # the welcome credit, once


def test_login_link_refusals(gateways: GatewayFactory) -> None:
    gw = gateways.start()
    assert gw.admin.post("/admin/users/ghost/login-link", json={}).status_code == 404
    uid, user_key = gw.user()
    bad = gw.admin.post(f"/admin/users/{uid}/login-link", json={"expires_in_hours": 721})
    assert bad.status_code == 422
    assert bad.json()["error"]["param"] == "expires_in_hours"
    refused = httpx.post(
        f"{gw.base_url}/admin/users/{uid}/login-link",
        headers={"Authorization": f"Bearer {user_key}"},
        json={},
    )
    assert refused.status_code == 403
    assert httpx.get(f"{gw.base_url}/portal/set-password?token=lnk-nope").status_code == 403


def test_an_email_taken_by_another_login_is_refused_beside_the_field(
    gateways: GatewayFactory, browsers: Browsers
) -> None:
    gw = portal_gateway(gateways)
    signed_up(browsers, gw, "erin@example.com")
    uid, _ = gw.user()
    url = path_of(gw.admin.post(f"/admin/users/{uid}/login-link", json={}).json()["url"], gw)
    c = browsers(gw)
    taken = set_login(c, url, "ERIN@example.com", NEW_PASSWORD)
    assert taken.status_code == 409
    assert 'id="email-error"' in taken.text
    assert set_login(c, url, "frank@example.com", NEW_PASSWORD).status_code == 303


def gateway_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    cli.main([*argv, "--json"])
    return orjson.loads(capsys.readouterr().out)


def test_cli_makes_login_links_through_the_api_and_direct(
    gw: RunningGateway,
    gateways: GatewayFactory,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GATEWAY_DATABASE_URL", gw.settings.database_url)
    monkeypatch.setenv("GATEWAY_ADMIN_KEY", ADMIN_KEY)
    monkeypatch.setenv("GATEWAY_URL", gw.base_url)
    monkeypatch.setenv("GATEWAY_MODELS", str(gateways.models_file()))
    uid, _ = gw.user()
    via_api = gateway_json(capsys, "users", "login-link", uid, "--expires-hours", "2")
    assert via_api["url"].endswith(f"/portal/set-password?token={via_api['token']}")
    direct = gateway_json(capsys, "users", "login-link", uid, "--direct")
    assert direct["url"] == f"/portal/set-password?token={direct['token']}"
    # The direct one replaced the first.
    assert httpx.get(f"{gw.base_url}{direct['url']}").status_code == 200
    stale = httpx.get(f"{gw.base_url}/portal/set-password", params={"token": via_api["token"]})
    assert stale.status_code == 403


def test_the_dashboard_makes_a_login_link_on_the_users_page(
    gateways: GatewayFactory, browsers: Browsers
) -> None:
    gw = gateways.start(GATEWAY_PUBLIC_URL="https://gw.example.com")
    uid, _ = gw.user()
    operator = browsers(gw)
    opened = operator.get("/dashboard/login")
    signed = operator.post(
        "/dashboard/login", data={"csrf_token": csrf_of(opened.text), "admin_key": ADMIN_KEY}
    )
    assert signed.status_code == 303, signed.text
    user_page = operator.get(f"/dashboard/users/{uid}")
    made = operator.post(
        f"/dashboard/users/{uid}/login-link", data={"csrf_token": csrf_of(user_page.text)}
    )
    assert made.status_code == 200, made.text
    found = re.search(
        r"https://gw\.example\.com(/portal/set-password\?token=lnk-[\w-]+)", made.text
    )
    assert found, made.text
    assert "gives them a portal login" in made.text
    assert browsers(gw).get(found.group(1)).status_code == 200
    assert found.group(0) not in operator.get(f"/dashboard/users/{uid}").text  # shown once
