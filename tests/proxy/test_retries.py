"""Retries, fallbacks and load balancing (README "Routing"), end to end: two mock upstreams on
two ports are providers `a` and `b` (tests/support/faults.py queues their failures), `dead` a
port nobody listens on; the official openai SDK is the client."""

from __future__ import annotations

import concurrent.futures
import re
import socket
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from aiohttp import web

from tests.support.faults import Fault, FaultyMock
from tests.support.gateway import GatewayFactory, RunningGateway, free_port, usd
from tests.support.scripted import DONE, Caller, ScriptedUpstream, chat, chunk, completion, raw, sse
from tests.support.scripted import stream as chunked
from tests.support.waiting import wait_until

MODELS = """\
currency: usd
providers:
  a: {{base_url: "{a}"}}
  b: {{base_url: "{b}"}}
  dead: {{base_url: "http://127.0.0.1:{dead}/v1"}}
models:
  solo:
    provider: a
    upstream_model: up-solo
    price: {{input: "1.00", output: "10.00"}}
    max_output_tokens: 100
  pair:
    price: {{input: "1.00", output: "10.00"}}
    max_output_tokens: 100
    deployments:
      - {{provider: a, upstream_model: up-a}}
      - {{provider: b, upstream_model: up-b, priority: 2}}
  dead-first:
    price: {{input: "1.00", output: "10.00"}}
    max_output_tokens: 100
    deployments:
      - {{provider: dead, upstream_model: up-dead}}
      - {{provider: b, upstream_model: up-b, priority: 2}}
  shared:
    price: {{input: "1.00", output: "10.00"}}
    max_output_tokens: 100
    deployments:
      - {{provider: a, upstream_model: up-a, weight: 1}}
      - {{provider: b, upstream_model: up-b, weight: 1}}
"""
# "hi": 1 prompt token by the mock's rule; its answer is 5 output tokens.
HI_COST = 1 * 1_000 + 5 * 10_000  # nano-USD
FAST = {"GATEWAY_RETRY_BACKOFF": "0.01", "GATEWAY_RETRY_BACKOFF_MAX": "0.02"}


@pytest.fixture(scope="module")
def mocks() -> Iterator[tuple[FaultyMock, FaultyMock]]:
    with ExitStack() as stack:
        yield stack.enter_context(FaultyMock()), stack.enter_context(FaultyMock())


@pytest.fixture
def start(
    gateways: GatewayFactory, mocks: tuple[FaultyMock, FaultyMock], tmp_path: Path
) -> Iterator[Callable[..., RunningGateway]]:
    a, b = mocks
    for mock in mocks:
        mock.faults.clear()
        mock.clear()
    path = tmp_path / "routed.yaml"
    path.write_text(MODELS.format(a=a.base_url, b=b.base_url, dead=free_port()))

    def started(**env: str) -> RunningGateway:
        return gateways.start(GATEWAY_MODELS=str(path), **{**FAST, **env})

    yield started
    for mock in mocks:
        mock.faults.clear()


def ask(gw: RunningGateway, key: str, model: str, content: str = "hi", **kw: object) -> object:
    return gw.client(key).chat.completions.create(
        model=model, messages=[{"role": "user", "content": content}], **kw
    )


def metrics(gw: RunningGateway, name: str) -> dict[str, int]:
    """``{labels: value}`` of one counter in /metrics."""
    text = httpx.get(f"{gw.base_url}/metrics").text
    return {m[0]: int(m[1]) for m in re.findall(rf"^{name}\{{(.*)\}} (\d+)$", text, re.M)}


def settled_once(gw: RunningGateway, uid: str) -> dict[str, object]:
    """The user's only usage record, once the balance shows its debit and nothing is held."""
    row = gw.wait_usage(uid, 1)[0]
    assert len(gw.usage(uid)) == 1
    assert gw.balance(uid) == usd("10.00") - usd(str(row["cost"]))
    assert gw.admin.get(f"/admin/users/{uid}").json()["reserved"] == "0.00"
    return row


@pytest.mark.parametrize(
    "mode", ["embedded", pytest.param("production", marks=pytest.mark.production)]
)
def test_a_failing_first_deployment_falls_back_and_the_caller_pays_once(
    start, mocks, mode: str, request: pytest.FixtureRequest
) -> None:
    a, b = mocks
    env = {}
    if mode == "production":  # the record reaches PostgreSQL through the Redis stream
        env = {
            "GATEWAY_DATABASE_URL": request.getfixturevalue("pg_dsn"),
            "GATEWAY_REDIS_URL": request.getfixturevalue("redis_url"),
        }
    gw = start(**env)
    uid, key = gw.user()
    a.fail(Fault(503))
    reply = ask(gw, key, "pair")
    assert reply.choices[0].message.content == "Hello from the mock model."
    assert (a.models_seen(), b.models_seen()) == (["up-a"], ["up-b"])
    row = settled_once(gw, uid)
    assert (row["status"], row["provider"], row["deployment"]) == ("ok", "b", "b/up-b")
    assert usd(str(row["cost"])) == HI_COST  # the model's price, whichever deployment served
    attempts = metrics(gw, "gateway_upstream_attempts_total")
    assert attempts == {
        'model="pair",deployment="a/up-a",result="server_error"': 1,
        'model="pair",deployment="b/up-b",result="answered"': 1,
    }
    fallbacks = metrics(gw, "gateway_upstream_fallbacks_total")
    assert fallbacks == {'model="pair",from="a/up-a",to="b/up-b"': 1}
    gw.stop()  # before its PostgreSQL database is dropped


def test_a_failing_deployment_cools_down_and_the_next_calls_skip_it(start, mocks) -> None:
    a, b = mocks
    gw = start()
    uid, key = gw.user()
    a.fail(Fault(500))
    for _ in range(3):
        ask(gw, key, "pair")
    assert (a.models_seen(), b.models_seen()) == (["up-a"], ["up-b"] * 3)
    rows = gw.wait_usage(uid, 3)
    assert {r["deployment"] for r in rows} == {"b/up-b"}


def test_a_cooled_down_deployment_serves_again(start, mocks) -> None:
    a, b = mocks
    gw = start(GATEWAY_COOLDOWN="0")
    uid, key = gw.user()
    a.fail(Fault(500))
    ask(gw, key, "pair")
    ask(gw, key, "pair")
    assert (a.models_seen(), b.models_seen()) == (["up-a", "up-a"], ["up-b"])
    rows = gw.wait_usage(uid, 2)
    assert sorted(r["deployment"] for r in rows) == ["a/up-a", "b/up-b"]


def test_a_lone_deployment_is_retried_after_a_transient_failure(start, mocks) -> None:
    a, _ = mocks
    gw = start()
    uid, key = gw.user()
    a.fail(Fault(502), Fault(429))
    assert ask(gw, key, "solo").usage.completion_tokens == 5
    assert a.models_seen() == ["up-solo"] * 3
    row = settled_once(gw, uid)
    assert (row["status"], row["deployment"], usd(str(row["cost"]))) == ("ok", "a/up-solo", HI_COST)
    assert metrics(gw, "gateway_upstream_fallbacks_total") == {}


def test_when_every_attempt_fails_the_caller_gets_the_last_answer_and_pays_nothing(
    start, mocks
) -> None:
    a, _ = mocks
    gw = start(GATEWAY_RETRY_ATTEMPTS="3")
    uid, key = gw.user()
    a.fail(Fault(500), Fault(503), Fault(502), Fault(500))
    with pytest.raises(openai.APIStatusError) as err:
        ask(gw, key, "solo")
    assert err.value.status_code == 502
    assert len(a.models_seen()) == 3
    assert len(a.faults) == 1  # the fourth was never asked for
    row = settled_once(gw, uid)
    assert (row["status"], row["cost"], row["deployment"]) == (
        "upstream_error",
        "0.00",
        "a/up-solo",
    )


def test_an_unreachable_deployment_falls_back(start, mocks) -> None:
    _, b = mocks
    gw = start()
    uid, key = gw.user()
    ask(gw, key, "dead-first")
    assert b.models_seen() == ["up-b"]
    row = settled_once(gw, uid)
    assert (row["status"], row["deployment"]) == ("ok", "b/up-b")
    attempts = metrics(gw, "gateway_upstream_attempts_total")
    assert attempts['model="dead-first",deployment="dead/up-dead",result="unreachable"'] == 1


def test_a_deployment_that_times_out_falls_back(start, mocks) -> None:
    a, b = mocks
    gw = start(GATEWAY_UPSTREAM_TIMEOUT="0.3")
    uid, key = gw.user()
    a.fail(Fault(200, delay=3))
    ask(gw, key, "pair")
    assert b.models_seen() == ["up-b"]
    row = settled_once(gw, uid)
    assert (row["status"], row["deployment"]) == ("ok", "b/up-b")
    attempts = metrics(gw, "gateway_upstream_attempts_total")
    assert attempts['model="pair",deployment="a/up-a",result="timeout"'] == 1


def test_a_long_retry_after_is_not_slept_through_by_a_lone_deployment(start, mocks) -> None:
    a, _ = mocks
    gw = start(GATEWAY_RETRY_AFTER_MAX="2")
    uid, key = gw.user()
    a.fail(Fault(429, {"Retry-After": "30"}))
    with pytest.raises(openai.RateLimitError) as err:
        ask(gw, key, "solo")
    assert err.value.body["message"] == "queued fault 429"
    assert err.value.response.headers["retry-after"] == "30"
    assert a.models_seen() == ["up-solo"]  # answered at once, not after 30 s
    row = settled_once(gw, uid)
    assert (row["status"], row["cost"]) == ("upstream_error", "0.00")


def test_a_long_retry_after_sends_the_call_to_another_deployment_at_once(start, mocks) -> None:
    a, b = mocks
    gw = start(GATEWAY_RETRY_AFTER_MAX="2", GATEWAY_COOLDOWN="0")
    uid, key = gw.user()
    a.fail(Fault(429, {"retry-after-ms": "60000"}))
    ask(gw, key, "pair")
    ask(gw, key, "pair")  # `a` asked for a minute: passed over though the cooldown is 0
    assert (a.models_seen(), b.models_seen()) == (["up-a"], ["up-b", "up-b"])
    assert {r["deployment"] for r in gw.wait_usage(uid, 2)} == {"b/up-b"}


def test_a_short_retry_after_is_waited_for(start, mocks) -> None:
    a, _ = mocks
    gw = start(GATEWAY_RETRY_AFTER_MAX="2")
    uid, key = gw.user()
    a.fail(Fault(429, {"retry-after-ms": "50"}), Fault(503, {"Retry-After": "0"}))
    ask(gw, key, "solo")
    assert a.models_seen() == ["up-solo"] * 3
    assert settled_once(gw, uid)["status"] == "ok"


def test_a_stream_falls_back_before_its_first_byte(start, mocks) -> None:
    a, b = mocks
    gw = start()
    uid, key = gw.user()
    a.fail(Fault(503))
    chunks = list(ask(gw, key, "pair", stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from the mock model."
    assert b.models_seen() == ["up-b"]
    row = settled_once(gw, uid)
    assert (row["status"], row["deployment"], row["usage_source"]) == ("ok", "b/up-b", "upstream")
    assert usd(str(row["cost"])) == HI_COST


def test_a_stream_cut_after_its_first_byte_is_never_retried(start, mocks) -> None:
    a, _ = mocks
    gw = start()
    uid, key = gw.user()
    stream = ask(gw, key, "pair", "[[mock:chunks=10]] [[mock:cut_after=3]]", stream=True)
    received: list[str | None] = []

    def read() -> None:
        for c in stream:  # the gateway ends a cut stream with an error the SDK raises on
            if c.choices:
                received.append(c.choices[0].delta.content)

    with pytest.raises(openai.APIError, match="upstream connection ended"):
        read()
    assert "".join(r or "" for r in received) == " w0 w1 w2"
    assert a.models_seen() == ["up-a"]
    row = settled_once(gw, uid)
    assert (row["status"], row["deployment"]) == ("upstream_cut", "a/up-a")


def test_a_refusal_of_the_request_itself_is_not_retried(start, mocks) -> None:
    a, b = mocks
    gw = start()
    uid, key = gw.user()
    a.fail(Fault(400))
    with pytest.raises(openai.BadRequestError):
        ask(gw, key, "pair")
    assert (a.models_seen(), b.models_seen()) == (["up-a"], [])
    assert settled_once(gw, uid)["status"] == "upstream_error"


def test_deployments_of_one_priority_share_the_calls(start, mocks) -> None:
    a, b = mocks
    gw = start()
    uid, key = gw.user()
    for _ in range(40):
        ask(gw, key, "shared")
    # Each call goes to either with probability 1/2: all 40 to one would be a 2e-12 event.
    assert len(a.models_seen()) + len(b.models_seen()) == 40
    assert a.models_seen()
    assert b.models_seen()
    rows = gw.wait_usage(uid, 40)
    assert {r["deployment"] for r in rows} == {"a/up-a", "b/up-b"}
    assert gw.balance(uid) == usd("10.00") - 40 * HI_COST


def test_the_reservation_is_made_once_across_attempts(start, mocks) -> None:
    a, b = mocks
    gw = start()
    uid, key = gw.user()
    a.fail(Fault(503, delay=1.5))

    def reserved() -> str:
        return str(gw.admin.get(f"/admin/users/{uid}").json()["reserved"])

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(ask, gw, key, "pair", "[[mock:delay=1.5]] hi")
        wait_until(a.models_seen, bool, wanted="the first attempt", show=str)
        first = reserved()
        wait_until(b.models_seen, bool, wanted="the second attempt", show=str)
        second = reserved()
        pending.result(timeout=20)
    assert usd(first) > 0
    assert second == first
    assert settled_once(gw, uid)["deployment"] == "b/up-b"


def test_a_client_gone_while_waiting_to_retry_pays_nothing(start, mocks) -> None:
    a, _ = mocks
    gw = start(GATEWAY_RETRY_BACKOFF="30", GATEWAY_RETRY_BACKOFF_MAX="30")
    uid, key = gw.user()
    a.fail(Fault(503))
    host, port = gw.base_url.removeprefix("http://").split(":")
    body = b'{"model":"solo","messages":[{"role":"user","content":"hi"}]}'
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {key}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        # Counted once the 503 is in and the gateway waits out its 30 s backoff.
        wait_until(
            lambda: metrics(gw, "gateway_upstream_attempts_total"),
            bool,
            wanted="the failed attempt",
            show=str,
        )
    row = settled_once(gw, uid)
    assert (row["status"], row["cost"]) == ("client_disconnected", "0.00")
    assert a.models_seen() == ["up-solo"]


DIALECTS = """\
currency: usd
providers:
  plain: {{base_url: "{url}"}}
  xai: {{base_url: "{url}", dialect: xai}}
models:
  g:
    price: {{input: "1.00", output: "10.00"}}
    max_output_tokens: 1000
    deployments:
      - {{provider: {first}, upstream_model: up-{first}}}
      - {{provider: {then}, upstream_model: up-{then}, priority: 2}}
"""
# No total_tokens: only the dialect says whether reasoning is inside completion_tokens (xai:
# beside it, so 5 + 3 output tokens are billed).
UNSETTLED = {
    "prompt_tokens": 10,
    "completion_tokens": 5,
    "completion_tokens_details": {"reasoning_tokens": 3},
}


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("first", "then", "output"), [("plain", "xai", 8), ("xai", "plain", 5)])
def test_usage_is_read_in_the_dialect_of_the_deployment_that_served(
    gateways: GatewayFactory,
    scripted: ScriptedUpstream,
    tmp_path: Path,
    first: str,
    then: str,
    output: int,
    stream: bool,
) -> None:
    models = tmp_path / "dialects.yaml"
    models.write_text(DIALECTS.format(url=scripted.base_url, first=first, then=then))
    gw = gateways.start(GATEWAY_MODELS=str(models))
    served = (
        chunked([sse(chunk("ok")), sse(chunk(finish="stop")), sse(chunk(usage=UNSETTLED)), DONE])
        if stream
        else raw(completion("ok", UNSETTLED))
    )

    async def answer(request: web.Request, body: Any) -> web.StreamResponse:
        if body["model"] == f"up-{first}":
            return web.json_response({"error": {"message": "down"}}, status=503)
        return await served(request, body)

    scripted.routes.clear()
    scripted.seen.clear()
    scripted.routes["/v1/chat/completions"] = answer
    _, _, row, debit = Caller(gw).call(
        "chat/completions", {**chat("hi"), "model": "g", "stream": stream}
    )
    assert [body["model"] for _, body in scripted.seen] == [f"up-{first}", f"up-{then}"]
    assert (row["status"], row["deployment"], row["completion_tokens"]) == (
        "ok",
        f"{then}/up-{then}",
        output,
    )
    assert debit == 10 * 1_000 + output * 10_000


KEYED = """\
currency: usd
providers:
  first: {{base_url: "{url}", api_key_env: FIRST_KEY}}
  then: {{base_url: "{url}", api_key_env: THEN_KEY}}
models:
  k:
    price: {{input: "1.00", output: "10.00"}}
    max_output_tokens: 1000
    deployments:
      - {{provider: first, upstream_model: up-first}}
      - {{provider: then, upstream_model: up-then, priority: 2}}
"""
FIRST_KEY, THEN_KEY = "sk-first-0123456789abcdef", "sk-then-fedcba9876543210"


@pytest.mark.parametrize("stream", [False, True])
def test_the_key_scrubbed_is_the_one_of_the_deployment_that_answered(
    gateways: GatewayFactory, scripted: ScriptedUpstream, tmp_path: Path, stream: bool
) -> None:
    models = tmp_path / "keyed.yaml"
    models.write_text(KEYED.format(url=scripted.base_url))
    gw = gateways.start(GATEWAY_MODELS=str(models), FIRST_KEY=FIRST_KEY, THEN_KEY=THEN_KEY)
    keys: list[str] = []

    async def answer(request: web.Request, body: Any) -> web.StreamResponse:
        key = request.headers["Authorization"].removeprefix("Bearer ")
        keys.append(key)
        if body["model"] == "up-first":
            return web.json_response({"error": {"message": "down"}}, status=503)
        echoed = f"your key is {key}"  # a provider echoing the key it was sent
        usage = {"prompt_tokens": 1, "completion_tokens": 4, "total_tokens": 5}
        if stream:
            pieces = [sse(chunk(echoed)), sse(chunk(finish="stop")), sse(chunk(usage=usage)), DONE]
            return await chunked(pieces)(request, body)
        return await raw(completion(echoed, usage))(request, body)

    scripted.routes.clear()
    scripted.routes["/v1/chat/completions"] = answer
    status, text, row, _ = Caller(gw).call(
        "chat/completions", {**chat("hi"), "model": "k", "stream": stream}
    )
    assert keys == [FIRST_KEY, THEN_KEY]
    assert (status, row["deployment"]) == (200, "then/up-then")
    assert b"your key is" in text
    assert THEN_KEY.encode() not in text
    assert THEN_KEY[-4:].encode() not in text
