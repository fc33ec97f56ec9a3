"""Invitations over the admin API and the CLI (both ways): the token is shown once, stored
hashed, never listed; a user key may not create one."""

from __future__ import annotations

import hashlib
import sqlite3
from typing import Any

import httpx
import orjson
import pytest

from gateway import cli
from tests.support.gateway import ADMIN_KEY, GatewayFactory, RunningGateway


def gateway_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    cli.main([*argv, "--json"])
    return orjson.loads(capsys.readouterr().out)


def test_admin_api_creates_and_lists_invitations(gateways: GatewayFactory) -> None:
    gw = gateways.start(GATEWAY_PUBLIC_URL="https://gw.example.com")
    made = gw.admin.post("/admin/invites", json={"email": "Ada@example.com", "expires_in_days": 3})
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["token"].startswith("inv-")
    assert body["url"] == f"https://gw.example.com/portal/signup?invite={body['token']}"
    assert (body["email"], body["used_by"]) == ("Ada@example.com", None)
    listed = gw.admin.get("/admin/invites").json()
    assert [i["id"] for i in listed["data"]] == [body["id"]]
    assert body["token"] not in orjson.dumps(listed).decode()
    # Stored hashed: the database holds the token's SHA-256, never the token.
    path = gw.settings.database_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        (stored,) = db.execute("SELECT token_hash FROM portal_invites").fetchone()
        dump = "\n".join(db.iterdump())
    assert stored == hashlib.sha256(body["token"].encode()).hexdigest()
    assert body["token"] not in dump
    bad = gw.admin.post("/admin/invites", json={"expires_in_days": 0})
    assert bad.status_code == 422
    assert bad.json()["error"]["param"] == "expires_in_days"
    _, user_key = gw.user()
    refused = httpx.post(
        f"{gw.base_url}/admin/invites", headers={"Authorization": f"Bearer {user_key}"}, json={}
    )
    assert refused.status_code == 403
    audit = gw.admin.get("/admin/audit", params={"action": "invite.create"}).json()
    assert [e["target"] for e in audit["data"]] == [body["id"]]


def test_cli_creates_invitations_through_the_api_and_direct(
    gw: RunningGateway,
    gateways: GatewayFactory,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GATEWAY_DATABASE_URL", gw.settings.database_url)
    monkeypatch.setenv("GATEWAY_ADMIN_KEY", ADMIN_KEY)
    monkeypatch.setenv("GATEWAY_URL", gw.base_url)
    monkeypatch.setenv("GATEWAY_MODELS", str(gateways.models_file()))
    via_api = gateway_json(capsys, "invites", "create", "--email", "a@example.com")
    assert via_api["url"].endswith(f"/portal/signup?invite={via_api['token']}")
    direct = gateway_json(capsys, "invites", "create", "--expires-days", "1", "--direct")
    assert direct["url"] == f"/portal/signup?invite={direct['token']}"
    assert direct["created_by"].startswith("cli:")
    listed = gateway_json(capsys, "invites", "list")
    assert [i["id"] for i in listed["data"]] == [direct["id"], via_api["id"]]
    cli.main(["invites", "list"])
    table = capsys.readouterr().out
    assert via_api["id"] in table
    assert "a@example.com" in table


def test_an_invitation_for_an_existing_users_email_is_refused_naming_the_login_link(
    gateways: GatewayFactory,
) -> None:
    gw = gateways.start(GATEWAY_PORTAL_SIGNUP="invite")
    made = gw.admin.post(
        "/admin/users", json={"id": "carol", "email": "carol@example.com", "initial_credit": "10"}
    )
    assert made.status_code == 201, made.text
    refused = gw.admin.post("/admin/invites", json={"email": "Carol@example.com"})
    assert refused.status_code == 409
    error = refused.json()["error"]
    assert (error["code"], error["param"]) == ("email_has_user", "email")
    assert "gateway users login-link carol" in error["message"]
    assert gw.admin.get("/admin/invites").json()["data"] == []
