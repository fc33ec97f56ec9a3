"""Key and user limits end to end, in embedded and production mode (README "Keys and
limits"): the openai SDK calls, httpx sets the limits; refusals in OpenAI's shape with their
headers, successes with the key's own x-ratelimit-* headers."""

from __future__ import annotations

import concurrent.futures
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import openai
import pytest

from tests.support.gateway import GatewayFactory, RunningGateway, usd

PROMPT = "one two three four five six seven eight"


@pytest.fixture(params=["embedded", pytest.param("production", marks=pytest.mark.production)])
def mgw(request: pytest.FixtureRequest, gateways: GatewayFactory) -> RunningGateway:
    if request.param == "embedded":
        return gateways.start()
    return gateways.start(
        GATEWAY_DATABASE_URL=request.getfixturevalue("pg_dsn"),
        GATEWAY_REDIS_URL=request.getfixturevalue("redis_url"),
    )


def keyed(gw: RunningGateway, **settings: Any) -> tuple[str, str, str]:
    """A user with $10 and a key with ``settings``: (user id, key id, key)."""
    uid, _ = gw.user("10.00")
    r = gw.admin.post(f"/admin/users/{uid}/keys", json=settings)
    assert r.status_code == 201, r.text
    return uid, r.json()["id"], r.json()["key"]


def chat(gw: RunningGateway, key: str, model: str = "chat", **extra: Any) -> Any:
    return gw.client(key).chat.completions.with_raw_response.create(
        model=model, max_tokens=10, messages=[{"role": "user", "content": PROMPT}], **extra
    )


def refusal(gw: RunningGateway, key: str, model: str = "chat") -> openai.APIStatusError:
    with pytest.raises(openai.APIStatusError) as caught:
        chat(gw, key, model)
    return caught.value


def until_refused(gw: RunningGateway, key: str) -> tuple[int, openai.APIStatusError]:
    """Calls until one is refused (at most 20): how many were served, and the refusal."""
    for served in range(20):
        try:
            chat(gw, key)
        except openai.APIStatusError as exc:
            return served, exc
    raise AssertionError("20 calls served: no limit held")


def test_rpm_refuses_with_retry_after_and_successes_carry_the_headers(mgw):
    _, _, key = keyed(mgw, limits={"rpm": 2})
    first = chat(mgw, key)
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    assert chat(mgw, key).headers["x-ratelimit-remaining-requests"] == "0"
    error = refusal(mgw, key)
    assert error.status_code == 429
    assert error.body["code"] == "rate_limit_exceeded"
    assert error.body["type"] == "requests"
    assert "requests per minute" in error.body["message"]
    assert 1 <= int(error.response.headers["retry-after"]) <= 60
    assert error.response.headers["x-ratelimit-remaining-requests"] == "0"


def test_a_key_without_limits_passes_the_upstream_rate_headers_on(mgw):
    _, _, key = keyed(mgw)
    assert "x-ratelimit-limit-requests" not in chat(mgw, key).headers


def test_the_budget_counts_reservations_and_refuses_402(mgw):
    # Each call reserves more than it costs (prompt counted + 10 output tokens), so the
    # budget admits while spent + that reserve fits, and the spend is exact afterwards.
    uid, key_id, key = keyed(mgw, limits={"budget": {"amount": "0.0003", "period": "day"}})
    served, error = until_refused(mgw, key)
    assert error.status_code == 402
    assert error.body["code"] == "key_budget_exceeded"
    rows = mgw.wait_usage(uid, served)
    spent = sum(usd(r["cost"]) for r in rows)
    assert served >= 1
    assert spent <= usd("0.0003") < spent + usd(rows[0]["cost"]) * 3
    shown = mgw.admin.get(f"/admin/keys/{key_id}").json()
    assert shown["limits"]["budget"] == {"amount": "0.0003", "period": "day", "tz": "UTC"}
    assert usd(shown["usage"]["spent"]) == spent
    assert shown["usage"]["reserved"] == "0.00"
    assert shown["usage"]["requests"] == served
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    assert shown["usage"]["period_resets_at"].startswith(tomorrow)
    assert mgw.balance(uid) == usd("10.00") - spent  # the balance is kept apart
    # Raising the budget lets the key spend again at once in this process.
    r = mgw.admin.patch(f"/admin/keys/{key_id}", json={"limits": {"budget": {"amount": "1"}}})
    assert r.status_code == 200, r.text
    chat(mgw, key)


def test_tpm_counts_tokens_and_corrects_them_at_settlement(mgw):
    uid, key_id, key = keyed(mgw, limits={"tpm": 100})
    served, error = until_refused(mgw, key)
    assert error.status_code == 429
    assert error.body["type"] == "tokens"
    assert "tokens per minute" in error.body["message"]
    assert error.response.headers["x-ratelimit-limit-tokens"] == "100"
    # Settled calls count what they used, not what they reserved (prompt + 10 output).
    rows = mgw.wait_usage(uid, served)
    used = sum(r["prompt_tokens"] + r["completion_tokens"] for r in rows)
    assert served >= 2
    assert used <= 100
    shown = mgw.admin.get(f"/admin/keys/{key_id}").json()["usage"]
    assert shown["tokens"] == used


def test_models_list_and_globs(mgw):
    _, key_id, key = keyed(mgw, models=["cheap"])
    error = refusal(mgw, key, "chat")
    assert (error.status_code, error.body["code"]) == (403, "model_not_allowed")
    chat(mgw, key, "cheap")
    # The key sees only what it may call (openai's models.list / retrieve).
    client = mgw.client(key)
    assert [m.id for m in client.models.list()] == ["cheap"]
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("chat")
    mgw.admin.patch(f"/admin/keys/{key_id}", json={"models": ["ch*"]})
    chat(mgw, key, "chat")
    assert {"chat", "cheap"} <= {m.id for m in client.models.list()}


def test_expired_key_is_401_expired_api_key(mgw):
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    uid, _ = mgw.user("10.00")
    born_expired = mgw.admin.post(f"/admin/users/{uid}/keys", json={"expires_at": past})
    assert (born_expired.status_code, born_expired.json()["error"]["param"]) == (422, "expires_at")
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    _, key_id, key = keyed(mgw, expires_at=future)
    chat(mgw, key)
    # Ending a key now, on purpose, is a PATCH.
    assert mgw.admin.patch(f"/admin/keys/{key_id}", json={"expires_at": past}).status_code == 200
    error = refusal(mgw, key)
    assert (error.status_code, error.body["code"]) == (401, "expired_api_key")


def test_disabled_user_is_refused_and_keeps_the_balance(mgw):
    uid, _, key = keyed(mgw)
    r = mgw.admin.patch(f"/admin/users/{uid}", json={"disabled": True, "email": "d@x.io"})
    assert r.status_code == 200
    assert r.json()["disabled"] is True
    error = refusal(mgw, key)
    assert (error.status_code, error.body["code"]) == (403, "user_disabled")
    assert mgw.balance(uid) == usd("10.00")
    mgw.admin.patch(f"/admin/users/{uid}", json={"disabled": False})
    chat(mgw, key)


def test_user_limits_apply_over_every_key_and_the_stricter_wins(mgw):
    uid, _, key = keyed(mgw, limits={"rpm": 10})
    other = mgw.admin.post(f"/admin/users/{uid}/keys", json={}).json()["key"]
    r = mgw.admin.patch(f"/admin/users/{uid}", json={"limits": {"rpm": 2}, "models": ["*"]})
    assert r.status_code == 200
    assert r.json()["limits"]["rpm"] == 2
    assert chat(mgw, key).headers["x-ratelimit-limit-requests"] == "2"  # the stricter
    chat(mgw, other)
    error = refusal(mgw, key)
    assert error.status_code == 429
    assert "this account" in error.body["message"]


def test_max_concurrent_holds_from_admission_to_settlement(mgw):
    _, _, key = keyed(mgw, limits={"max_concurrent": 2})
    slow = {"role": "user", "content": PROMPT + " [[mock:delay=1.5]]"}

    def call(_: int) -> int:
        r = httpx.post(
            f"{mgw.base_url}/v1/chat/completions",
            json={"model": "chat", "max_tokens": 10, "messages": [slow]},
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )
        return r.status_code

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        codes = list(pool.map(call, range(6)))
    assert codes.count(200) == 2
    assert codes.count(429) == 4
    chat(mgw, key)  # released by settlement


def test_an_uncapped_call_is_fitted_to_what_the_budget_leaves(mgw, upstream):
    # Newcomer trial of issue 12: a budget below the model's whole output cap refused every
    # call without max_tokens, while the balance alone would have been fitted.
    uid, _, key = keyed(mgw, limits={"budget": {"amount": "0.005", "period": "day"}})
    api = mgw.client(key).chat.completions
    messages = [{"role": "user", "content": PROMPT}]
    answer = api.create(model="chat", messages=messages)  # 1000 output tokens need $0.01
    assert answer.choices[0].message.content == "Hello from the mock model."
    cap = upstream.requests()[-1]["body"]["max_completion_tokens"]
    assert 400 < cap < 500  # ($0.005 - the prompt) / $10 per 1M output tokens
    streamed = api.create(model="chat", messages=messages, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    with pytest.raises(openai.APIStatusError) as asked:  # a cap the caller set is never lowered
        api.create(model="chat", messages=messages, max_tokens=900)
    assert (asked.value.status_code, asked.value.body["code"]) == (402, "key_budget_exceeded")
    rows = mgw.wait_usage(uid, 2)
    assert sum(usd(r["cost"]) for r in rows) <= usd("0.005")


def test_patching_limits_changes_only_the_fields_named(mgw):
    # Newcomer trial of issue 12: the README's {"limits": {"rpm": 120}} dropped the budget.
    limits = {"budget": {"amount": "0.50", "period": "day"}, "rpm": 60, "max_concurrent": 4}
    uid, key_id, _ = keyed(mgw, limits=limits)
    r = mgw.admin.patch(f"/admin/keys/{key_id}", json={"limits": {"rpm": 120}})
    assert r.status_code == 200, r.text
    shown = mgw.admin.get(f"/admin/keys/{key_id}").json()["limits"]
    assert shown["rpm"] == 120
    assert shown["budget"] == {"amount": "0.50", "period": "day", "tz": "UTC"}
    assert shown["max_concurrent"] == 4
    mgw.admin.patch(f"/admin/keys/{key_id}", json={"limits": {"budget": {"amount": "2"}}})
    mgw.admin.patch(f"/admin/keys/{key_id}", json={"limits": {"max_concurrent": None}})
    shown = mgw.admin.get(f"/admin/keys/{key_id}").json()["limits"]
    assert shown["budget"] == {"amount": "2.00", "period": "day", "tz": "UTC"}
    assert shown.get("max_concurrent") is None
    assert shown["rpm"] == 120
    # The same on a user.
    mgw.admin.patch(f"/admin/users/{uid}", json={"limits": {"rpm": 10, "tpm": 5000}})
    user = mgw.admin.patch(f"/admin/users/{uid}", json={"limits": {"tpm": None}}).json()
    assert (user["limits"]["rpm"], user["limits"].get("tpm")) == (10, None)


def test_rotation_keeps_the_settings_and_a_grace_period(mgw):
    _uid, key_id, key = keyed(mgw, name="ci", limits={"rpm": 50}, metadata={"team": "a"})
    r = mgw.admin.post(f"/admin/keys/{key_id}/rotate", json={"grace_seconds": 3600})
    assert r.status_code == 201, r.text
    rotated = r.json()
    assert rotated["limits"]["rpm"] == 50
    assert rotated["metadata"] == {"team": "a"}
    assert rotated["replaces"]["rotated_to"] == rotated["id"]
    chat(mgw, key)  # still in its grace period
    chat(mgw, rotated["key"])
    # The replaced key cannot be rotated again (a key made from it would be born expired).
    again = mgw.admin.post(f"/admin/keys/{key_id}/rotate", json={"grace_seconds": 60})
    assert (again.status_code, again.json()["error"]["code"]) == (409, "conflict")
    assert rotated["id"] in again.json()["error"]["message"]
    r = mgw.admin.post(f"/admin/keys/{rotated['id']}/rotate", json={"grace_seconds": 0})
    error = refusal(mgw, rotated["key"])
    assert (error.status_code, error.body["code"]) == (401, "expired_api_key")
    chat(mgw, r.json()["key"])


def test_my_keys(mgw):
    _uid, key_id, key = keyed(mgw)
    with httpx.Client(base_url=mgw.base_url, headers={"Authorization": f"Bearer {key}"}) as me:
        r = me.post("/me/keys", json={"name": "ci", "limits": {"rpm": 1}, "models": ["chat"]})
        assert r.status_code == 201, r.text
        mine = r.json()
        chat(mgw, mine["key"])
        shown = me.get(f"/me/keys/{mine['id']}").json()
        assert shown["usage"]["requests"] == 1
        assert shown["models"] == ["chat"]
        assert {key_id, mine["id"]} <= {k["id"] for k in me.get("/me/keys").json()["data"]}
        assert me.patch(f"/me/keys/{mine['id']}", json={"limits": None}).json()["limits"] is None
        chat(mgw, mine["key"])
        assert me.delete(f"/me/keys/{mine['id']}").json()["revoked_at"] is not None
        # Another user's key is not the caller's to see.
        _, theirs, _ = keyed(mgw)
        assert me.get(f"/me/keys/{theirs}").status_code == 404
        bad = me.post("/me/keys", json={"limits": {"budget": {"amount": "-1"}}})
        assert bad.status_code == 422
