"""Admission end to end: what a call is reserved at bounds what the upstream can bill, on both
metering modes (embedded: SQLite + in-process balances; production: PostgreSQL + Redis).

The models are the case scripts' (/work/shared/cases, BH-14/15/16/22): `m` costs $1.00 per 1M
prompt tokens and $10.00 per 1M output tokens (1,000 and 10,000 nano-USD per token) with
max_output_tokens 1000, served by `provider`, which stands for the cases' upstream: slow, and
writing every token it is allowed up to its own limit (4000, above models.yaml's). `m-window`
is the same model with its inputs bounded in models.yaml, served by the project's mock.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import threading
from collections import deque
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from aiohttp import web

from gateway.mock.runner import MockUpstreamThread
from gateway.mock.upstream import REQUESTS_KEY
from tests.support.gateway import GatewayFactory, RunningGateway, usd

MODELS = """\
currency: usd
providers:
  mock: {{base_url: "{base_url}", api_key_env: MOCK_PROVIDER_KEY}}
  provider: {{base_url: "{provider_url}"}}
models:
  m:
    provider: provider
    upstream_model: up-model
    price: {{input: "1.00", cached_input: "0.10", output: "10.00"}}
    max_output_tokens: 1000
  m-window:
    provider: mock
    upstream_model: up-model
    price: {{input: "1.00", cached_input: "0.10", output: "10.00"}}
    max_output_tokens: 1000
    context_window: 200000
    image_tokens: {{base: 85, tile: 170}}
"""
PROMPT, OUTPUT = 1_000, 10_000  # nano-USD per token
POOR = "0.02"
LIMIT = 4000  # the provider's own output limit


async def generous_chat(request: web.Request) -> web.Response:
    body = await request.json()
    request.app[REQUESTS_KEY].append({"body": body})
    await asyncio.sleep(0.5)
    asked = next((body[k] for k in ("max_completion_tokens", "max_tokens") if k in body), None)
    n = min(asked or LIMIT, LIMIT)
    usage = {"prompt_tokens": 9, "completion_tokens": n, "total_tokens": 9 + n}
    choice = {"index": 0, "finish_reason": "length", "message": {"content": "x " * n}}
    return web.json_response({"object": "chat.completion", "choices": [choice], "usage": usage})


def generous_app() -> web.Application:
    app = web.Application()
    app[REQUESTS_KEY] = deque(maxlen=200)
    app.router.add_post("/v1/chat/completions", generous_chat)
    return app


@pytest.fixture(scope="module")
def provider() -> Iterator[MockUpstreamThread]:
    with MockUpstreamThread(app=generous_app) as server:
        yield server


@pytest.fixture
def models(
    gateways: GatewayFactory, upstream: MockUpstreamThread, provider: MockUpstreamThread
) -> None:
    provider.clear()
    text = MODELS.format(base_url=upstream.base_url, provider_url=provider.base_url)
    gateways.models_file().write_text(text)


@pytest.fixture(params=["embedded", pytest.param("production", marks=pytest.mark.production)])
def metered(
    request: pytest.FixtureRequest, gateways: GatewayFactory, models: None
) -> Iterator[RunningGateway]:
    """A gateway on the cases' models, in each metering mode."""
    env: dict[str, str] = {}
    if request.param == "production":
        env = {
            "GATEWAY_DATABASE_URL": request.getfixturevalue("pg_dsn"),
            "GATEWAY_REDIS_URL": request.getfixturevalue("redis_url"),
        }
    gw = gateways.start(**env)
    yield gw
    gw.stop()  # before its PostgreSQL database is dropped


def post(gw: RunningGateway, key: str, path: str, body: dict[str, Any]) -> httpx.Response:
    # json.dumps as the case scripts send it: the body's length sizes the free reservation.
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    return httpx.post(
        f"{gw.base_url}/v1/{path}", content=json.dumps(body), headers=headers, timeout=30
    )


def chat(content: str, **fields: Any) -> dict[str, Any]:
    return {"model": "m", **fields, "messages": [{"role": "user", "content": content}]}


def account(gw: RunningGateway, uid: str) -> tuple[int, int]:
    """(balance, reserved) in nano-USD, as the admin API shows them."""
    view = gw.admin.get(f"/admin/users/{uid}").json()
    return usd(view["balance"]), usd(view["reserved"])


def sent(upstream: MockUpstreamThread) -> list[dict[str, Any]]:
    return [entry["body"] for entry in upstream.requests()]


# -- BH-15: the cap reserved is the cap the upstream is told ---------------------------------


def test_the_upstream_is_told_the_cap_that_was_reserved(
    metered: RunningGateway, provider: MockUpstreamThread
) -> None:
    for sub, extra in (("a", {"max_tokens": 50_000}), ("b", {})):
        uid, key = metered.user(POOR)
        reply = post(metered, key, "chat/completions", chat("hi", **extra))
        assert reply.status_code == 200, (sub, reply.text)
        body = sent(provider)[-1]
        if sub == "a":  # the caller's field, lowered to the model's limit
            assert body["max_tokens"] == 1000
            assert "max_completion_tokens" not in body
        else:  # none sent: the endpoint's own field
            assert body["max_completion_tokens"] == 1000
        assert reply.json()["usage"]["completion_tokens"] == 1000
        [row] = metered.wait_usage(uid, 1)
        assert account(metered, uid) == (usd(POOR) - usd(row["cost"]), 0)
        assert usd(row["cost"]) == 9 * PROMPT + 1000 * OUTPUT


# -- D: a whole answer without a cap gets the cap the balance covers -------------------------


def test_an_uncapped_answer_is_forwarded_with_the_cap_the_balance_covers(
    metered: RunningGateway, provider: MockUpstreamThread
) -> None:
    uid, key = metered.user("0.005")  # 1000 output tokens would need $0.01
    reply = post(metered, key, "chat/completions", chat("hi"))
    assert reply.status_code == 200, reply.text
    cap = sent(provider)[-1]["max_completion_tokens"]
    # 9 prompt tokens counted (README: the chat format's overhead): (5,000,000 - 9,000) / 10,000
    assert cap == 499
    [row] = metered.wait_usage(uid, 1)
    assert row["completion_tokens"] == cap
    balance, reserved = account(metered, uid)
    assert balance == usd("0.005") - usd(row["cost"]) >= 0
    assert reserved == 0


@pytest.mark.parametrize(
    ("env", "body", "why"),
    [
        ({"GATEWAY_UNCAPPED_CALLS": "refuse"}, chat("hi"), "the operator refuses them"),
        ({}, chat("hi", max_tokens=900), "the caller set the cap"),
    ],
)
def test_calls_that_are_not_fitted_are_refused_with_what_fits(
    gateways: GatewayFactory,
    models: None,
    provider: MockUpstreamThread,
    env: dict[str, str],
    body: dict[str, Any],
    why: str,
) -> None:
    gw = gateways.start(**env)
    uid, key = gw.user("0.005")
    reply = post(gw, key, "chat/completions", body)
    assert reply.status_code == 402, why
    error = reply.json()["error"]
    assert error["code"] == "insufficient_quota"
    assert " to 499 or less" in error["message"]
    assert sent(provider) == []
    assert account(gw, uid) == (usd("0.005"), 0)


# -- BH-22 (a): n choices share what fits ------------------------------------------------------


def test_n_choices_are_reserved_and_the_402_suggests_a_cap_that_fits_all_of_them(
    metered: RunningGateway, provider: MockUpstreamThread
) -> None:
    uid, key = metered.user("0.002")
    reply = post(metered, key, "chat/completions", chat("a", n=3, max_tokens=100))
    assert reply.status_code == 402
    error = reply.json()["error"]
    assert (error["type"], error["code"]) == ("insufficient_quota", "insufficient_quota")
    # 300 output tokens do not fit; 199 do, so 66 per choice (not 199).
    assert "(9 prompt tokens + up to 300 output tokens)" in error["message"]
    assert "Set max_tokens to 66 or less" in error["message"]
    assert sent(provider) == []
    assert account(metered, uid) == (usd("0.002"), 0)


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("chat/completions", chat("a", n=0), "n"),
        ("chat/completions", chat("a", n="3"), "n"),
        ("chat/completions", chat("a", n=1000), "n"),
        ("completions", {"model": "m", "prompt": "a", "best_of": 500}, "best_of"),
        ("completions", {"model": "m", "prompt": "a", "max_tokens": -1}, "max_tokens"),
    ],
)
def test_invalid_choice_counts_and_caps_are_400_in_openais_shape(
    gw: RunningGateway, path: str, body: dict[str, Any], param: str
) -> None:
    _, key = gw.user()
    reply = post(gw, key, path, {**body, "model": "chat"})
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert (error["type"], error["code"], error["param"]) == (
        "invalid_request_error",
        "invalid_value",
        param,
    )


# -- BH-16: a prompt held upstream ------------------------------------------------------------

CONTINUE = {"previous_response_id": "resp_1", "input": "continue [[mock:stored=150000]]"}


def test_a_continuation_on_a_model_without_a_context_window_is_refused(
    metered: RunningGateway, upstream: MockUpstreamThread
) -> None:
    uid, key = metered.user(POOR)
    reply = post(metered, key, "responses", {"model": "m", **CONTINUE})
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert (error["code"], error["param"]) == ("unbounded_input", "previous_response_id")
    assert sent(upstream) == []
    assert account(metered, uid) == (usd(POOR), 0)


def test_a_continuation_is_reserved_at_the_context_window(
    metered: RunningGateway, upstream: MockUpstreamThread
) -> None:
    poor_uid, poor = metered.user(POOR)
    refused = post(metered, poor, "responses", {"model": "m-window", **CONTINUE})
    assert refused.status_code == 402
    assert "previous_response_id" in refused.json()["error"]["message"]
    assert account(metered, poor_uid) == (usd(POOR), 0)
    # With credit for the window, the call runs and its real bill fits inside the reservation.
    uid, key = metered.user("0.25")
    body = {"model": "m-window", **CONTINUE, "instructions": "[[mock:chunks=50]]"}
    reply = post(metered, key, "responses", body)
    assert reply.status_code == 200, reply.text
    assert sent(upstream)[-1]["max_output_tokens"] == 1000
    [row] = metered.wait_usage(uid, 1)
    assert (row["prompt_tokens"], row["completion_tokens"]) == (150_001, 50)
    assert usd(row["cost"]) == 150_001 * PROMPT + 50 * OUTPUT
    assert account(metered, uid) == (usd("0.25") - usd(row["cost"]), 0)


def test_images_are_reserved_by_the_models_rule_or_refused(
    metered: RunningGateway, upstream: MockUpstreamThread
) -> None:
    parts = [{"type": "text", "text": "what is this"}] + [
        {"type": "image_url", "image_url": {"url": f"https://x/{i}.png"}} for i in range(2)
    ]
    body = {"model": "m-window", "max_tokens": 10, "messages": [{"role": "user", "content": parts}]}
    uid, key = metered.user("0.002")  # 2 x 1445 image tokens + 10 output tokens do not fit
    refused = post(metered, key, "chat/completions", body)
    assert refused.status_code == 402
    assert "2 images" in refused.json()["error"]["message"]
    rich_uid, rich = metered.user("0.01")
    assert post(metered, rich, "chat/completions", body).status_code == 200
    unbounded = post(metered, rich, "chat/completions", {**body, "model": "m"})
    assert unbounded.json()["error"]["code"] == "unbounded_input"
    assert len(sent(upstream)) == 1
    assert account(metered, uid) == (usd("0.002"), 0)
    [row] = metered.wait_usage(rich_uid, 1)
    assert account(metered, rich_uid) == (usd("0.01") - usd(row["cost"]), 0)


# -- BH-14: concurrent calls against one balance -----------------------------------------------


def test_concurrent_calls_never_reserve_more_than_the_balance(metered: RunningGateway) -> None:
    # Each call's free reservation is 91 prompt tokens (its 80-byte body + the chat overhead)
    # + 100 output tokens = 1,091,000; five fit, a sixth does not. The slow upstream bills 9
    # prompt + 100 output tokens = 1,009,000.
    credit, cost = 5 * 1_091_000 + 500_000, 9 * PROMPT + 100 * OUTPUT
    uid, key = metered.user(str(credit / 10**9))
    body = chat("hi", max_tokens=100)
    seen: list[tuple[int, int]] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            seen.append(account(metered, uid))

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            replies = list(
                pool.map(
                    lambda _: post(metered, key, "chat/completions", body),
                    range(20),
                )
            )
    finally:
        done.set()
        watcher.join()
    admitted = [r for r in replies if r.status_code == 200]
    refused = [r for r in replies if r.status_code == 402]
    assert 1 <= len(admitted) <= credit // cost
    assert len(admitted) + len(refused) == 20
    assert all(r.json()["error"]["code"] == "insufficient_quota" for r in refused)
    assert all(balance - reserved >= 0 for balance, reserved in seen)
    rows = metered.wait_usage(uid, len(admitted))
    assert len(rows) == len(admitted)
    assert account(metered, uid) == (credit - len(admitted) * cost, 0)
    if len(admitted) == 5:  # 910,000 left: (910,000 - 9,000) / 10,000 output tokens fit
        again = post(metered, key, "chat/completions", body)
        assert again.status_code == 402
        assert "Set max_tokens to 90 or less" in again.json()["error"]["message"]
