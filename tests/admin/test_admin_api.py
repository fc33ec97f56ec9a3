"""The operator surface of issue 1: users, keys, credits, usage; auth and amount validation."""

from __future__ import annotations

import httpx
import pytest

from tests.support.gateway import usd


def test_admin_needs_the_admin_key(gw):
    _, key = gw.user()
    no_auth = httpx.post(f"{gw.base_url}/admin/users", json={})
    assert no_auth.status_code == 401
    assert no_auth.json()["error"]["type"] == "authentication_error"
    as_user = httpx.post(
        f"{gw.base_url}/admin/users", json={}, headers={"Authorization": f"Bearer {key}"}
    )
    assert as_user.status_code == 403


@pytest.mark.parametrize("path", ["/admin/users/x", "/admin/billing/events"])
def test_a_wrong_admin_key_is_401_and_a_user_key_403(gw, path):
    _, key = gw.user()
    wrong = httpx.get(f"{gw.base_url}{path}", headers={"Authorization": "Bearer adm-typo"})
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "invalid_api_key"
    as_user = httpx.get(f"{gw.base_url}{path}", headers={"Authorization": f"Bearer {key}"})
    assert as_user.status_code == 403
    assert as_user.json()["error"]["type"] == "permission_error"


def test_admin_api_is_closed_without_an_admin_key(gateways):
    gw = gateways.start(GATEWAY_ADMIN_KEY="")
    r = httpx.get(f"{gw.base_url}/admin/users/x", headers={"Authorization": "Bearer anything"})
    assert r.status_code == 403


def test_create_user_with_credit_and_show_it(gw):
    r = gw.admin.post(
        "/admin/users", json={"id": "alice", "email": "a@example.com", "initial_credit": "12.50"}
    )
    assert r.status_code == 201
    user = r.json()
    assert user == {
        "id": "alice",
        "email": "a@example.com",
        "balance": "12.50",
        "reserved": "0.00",
        "created_at": user["created_at"],
        "disabled": False,
        "limits": None,
        "models": None,
    }
    assert gw.admin.post("/admin/users", json={"id": "alice"}).status_code == 409
    assert gw.admin.get("/admin/users/bob").status_code == 404


def test_keys_are_shown_once_and_stored_hashed(gw):
    uid, _ = gw.user()
    created = gw.admin.post(f"/admin/users/{uid}/keys", json={"name": "ci"}).json()
    assert created["key"].startswith(created["prefix"])
    listed = gw.admin.get(f"/admin/users/{uid}/keys").json()
    assert listed["has_more"] is False
    assert all("key" not in k for k in listed["data"])
    db = gw.settings.database_url.removeprefix("sqlite:///")
    with open(db, "rb") as fh:
        assert created["key"].encode() not in fh.read()


def test_me_shows_balance_key_and_usage(gw):
    uid, key = gw.user("3.00")
    gw.client(key).chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "x"}]
    )
    gw.wait_usage(uid, 1)
    auth = {"Authorization": f"Bearer {key}"}
    me = httpx.get(f"{gw.base_url}/me", headers=auth).json()
    assert me["user_id"] == uid
    assert me["key"]["prefix"] == key[:12]
    assert usd(me["balance"]) == gw.balance(uid) < usd("3.00")
    usage = httpx.get(f"{gw.base_url}/me/usage", headers=auth).json()
    assert len(usage["data"]) == 1
    assert usage["has_more"] is False
    assert usage["data"][0]["model"] == "chat"
    assert httpx.get(f"{gw.base_url}/me").status_code == 401


def test_credit_is_added_and_applies_to_the_next_call_at_once(gw):
    uid, key = gw.user("0.00")
    r = gw.admin.post(f"/admin/users/{uid}/credits", json={"amount": 1.25, "reason": "promo"})
    assert r.status_code == 200, r.text
    assert r.json()["user"]["balance"] == "1.25"
    assert r.json()["entry"]["kind"] == "grant"
    gw.client(key).chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "x"}]
    )


@pytest.mark.parametrize(
    "amount", ["-5", -5, "NaN", "Infinity", "1e30", "abc", None, True, "0", "0.0000000001", [], {}]
)
def test_bad_amounts_are_422_and_change_nothing(gw, amount):
    uid, _ = gw.user("1.00")
    r = gw.admin.post(f"/admin/users/{uid}/credits", json={"amount": amount})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "invalid_amount"
    assert gw.balance(uid) == usd("1.00")


def test_json_nan_literal_is_refused(gw):
    uid, _ = gw.user("1.00")
    r = gw.admin.post(
        f"/admin/users/{uid}/credits",
        content=b'{"amount": NaN}',
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 422
    assert gw.balance(uid) == usd("1.00")


def test_revoking_a_key_takes_effect_at_once(gw):
    uid, key = gw.user()
    key_id = gw.admin.get(f"/admin/users/{uid}/keys").json()["data"][0]["id"]
    auth = {"Authorization": f"Bearer {key}"}
    assert httpx.get(f"{gw.base_url}/me", headers=auth).status_code == 200
    gw.admin.delete(f"/admin/keys/{key_id}")
    assert httpx.get(f"{gw.base_url}/me", headers=auth).status_code == 401
    assert gw.admin.delete("/admin/keys/key_missing").status_code == 404


def test_usage_pagination_neither_skips_nor_repeats(gw):
    uid, key = gw.user()
    client = gw.client(key)
    for _ in range(12):
        client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "x"}])
    gw.wait_usage(uid, 12)
    seen: list[str] = []
    offset = 0
    while True:
        page = gw.admin.get(
            f"/admin/users/{uid}/usage", params={"limit": 5, "offset": offset}
        ).json()
        seen += [r["request_id"] for r in page["data"]]
        offset += 5
        if not page["has_more"]:
            break
    assert len(seen) == len(set(seen)) == 12
    times = [r["created_at"] for r in gw.usage(uid)]
    assert times == sorted(times, reverse=True)


def test_readyz_reports_dependencies(gw):
    r = httpx.get(f"{gw.base_url}/readyz")
    assert r.status_code == 200
    assert r.json()["database"] == "ok"


def test_metrics_count_settled_calls_and_refusals(gw):
    _, key = gw.user()
    gw.client(key).chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "x"}]
    )
    httpx.post(
        f"{gw.base_url}/v1/chat/completions",
        json={"model": "chat"},
        headers={"Authorization": "Bearer wrong"},
    )
    text = httpx.get(f"{gw.base_url}/metrics").text
    assert 'gateway_calls_total{endpoint="chat/completions",model="chat",status="ok"} 1' in text
    assert 'gateway_refused_total{status="401"} 1' in text


def test_metrics_take_a_bearer_token_when_one_is_set(gateways):
    gw = gateways.start(GATEWAY_METRICS_TOKEN="metrics-" + "t" * 16)
    try:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}):
            refused = httpx.get(f"{gw.base_url}/metrics", headers=headers)
            assert refused.status_code == 401
            assert "gateway_" not in refused.text
        shown = httpx.get(
            f"{gw.base_url}/metrics", headers={"Authorization": "Bearer metrics-" + "t" * 16}
        )
        assert shown.status_code == 200
        assert "gateway_inflight_calls" in shown.text
    finally:
        gw.stop()
