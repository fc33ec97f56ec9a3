"""Anthropic's Messages API end to end: the official ``anthropic`` SDK against a real gateway
in front of the mock upstream's Anthropic side (gateway.mock.anthropic), in embedded and
production mode. Model `claude`: $3 in, $0.30 cache reads, $3.75 / $6 cache writes (5m / 1h),
$15 out per 1M tokens, so every cost below is a whole number of nano-USD per token."""

from __future__ import annotations

import concurrent.futures
import re
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest

from gateway.pricing import Price, Usage, cost
from tests.support.gateway import PROVIDER_KEY, GatewayFactory, RunningGateway, usd

MODELS = """\
currency: usd
providers:
  claude-api:
    api: anthropic
    base_url: {base_url}
    api_key_env: MOCK_PROVIDER_KEY
  mock:
    base_url: {base_url}
    api_key_env: MOCK_PROVIDER_KEY
models:
  claude:
    provider: claude-api
    upstream_model: claude-mock-1
    price: {{input: "3.00", cached_input: "0.30", cache_write: "3.75", cache_write_1h: "6.00",
             output: "15.00"}}
    max_output_tokens: 1000
    context_window: 200000
    image_tokens: 1600
  chat:
    provider: mock
    upstream_model: mock-gpt
    price: {{input: "2.50", output: "10.00"}}
    max_output_tokens: 1000
"""
PRICE = Price(
    input=3_000_000_000,
    cached_input=300_000_000,
    cache_write=3_750_000_000,
    cache_write_1h=6_000_000_000,
    output=15_000_000_000,
)
PROMPT = "one two three four five six seven eight nine ten"  # 10 mock tokens
TOOLS = [
    {
        "name": "search",
        "description": "Search the docs.",
        "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}},
    }
]


def priced(prompt: int, output: int, *, cached: int = 0, w5: int = 0, w1: int = 0) -> int:
    usage = Usage(
        prompt_tokens=prompt,
        completion_tokens=output,
        cached_tokens=cached,
        cache_write_tokens=w5 + w1,
        cache_write_1h_tokens=w1,
    )
    return cost(PRICE, usage)


@pytest.fixture(params=["embedded", pytest.param("production", marks=pytest.mark.production)])
def agw(request: pytest.FixtureRequest, gateways: GatewayFactory, tmp_path: Path) -> RunningGateway:
    models = tmp_path / "claude.yaml"
    models.write_text(MODELS.format(base_url=gateways.upstream.base_url))
    env = {"GATEWAY_MODELS": str(models)}
    if request.param == "production":
        env["GATEWAY_DATABASE_URL"] = request.getfixturevalue("pg_dsn")
        env["GATEWAY_REDIS_URL"] = request.getfixturevalue("redis_url")
    return gateways.start(**env)


def client(gw: RunningGateway, key: str, *, bearer: bool = False) -> anthropic.Anthropic:
    auth: dict[str, Any] = {"auth_token": key} if bearer else {"api_key": key}
    made = anthropic.Anthropic(base_url=gw.base_url, max_retries=0, **auth)
    # Closed with the gateway (RunningGateway.stop): a pool left to the collector warns there,
    # inside whichever later test happens to run then.
    gw.clients.append(made)  # type: ignore[arg-type]
    return made


def user_says(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def test_create_relays_the_answer_and_debits_cache_reads_and_both_cache_writes(agw, gateways):
    uid, key = agw.user("10.00")
    # 40 words: the directives' own tokens leave the mock's count plausible for the prompt.
    words = " ".join(f"w{i}" for i in range(40))
    text = f"{words} [[mock:cached=2]] [[mock:cache_write=3]] [[mock:cache_write_hour=1]]"
    reply = client(agw, key).messages.create(
        model="claude",
        max_tokens=100,
        messages=user_says(text),
        extra_headers={"anthropic-version": "2099-01-01"},
    )
    assert reply.content[0].text == "Hello from the mock model."
    u = reply.usage
    assert (u.input_tokens, u.cache_read_input_tokens, u.cache_creation_input_tokens) == (34, 2, 4)
    row = agw.wait_usage(uid, 1)[0]
    assert (row["status"], row["usage_source"], row["endpoint"]) == ("ok", "upstream", "messages")
    assert (row["prompt_tokens"], row["cached_tokens"], row["completion_tokens"]) == (40, 2, 5)
    expected = priced(40, 5, cached=2, w5=3, w1=1)
    assert usd(row["cost"]) == expected
    assert agw.balance(uid) == usd("10.00") - expected
    sent = gateways.upstream.requests()[-1]
    assert sent["path"] == "/v1/messages"
    assert sent["headers"]["x-api-key"] == PROVIDER_KEY  # the operator's key, not the caller's
    assert "authorization" not in sent["headers"]
    assert sent["headers"]["anthropic-version"] == "2099-01-01"  # as the caller sent it
    assert sent["body"]["model"] == "claude-mock-1"


def test_bearer_token_and_messages_stream_debit_the_reported_usage(agw, gateways):
    uid, key = agw.user("10.00")
    beta = {"anthropic-beta": "prompt-caching-2024-07-31", "anthropic-version": "2023-06-01"}
    with client(agw, key, bearer=True).messages.stream(
        model="claude",
        max_tokens=100,
        messages=user_says(f"{PROMPT} [[mock:chunks=12]] [[mock:cache_write_hour=2]]"),
        extra_headers=beta,
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "".join(f" w{i}" for i in range(12))
    assert final.usage.output_tokens == 12
    row = agw.wait_usage(uid, 1)[0]
    assert (row["status"], row["usage_source"]) == ("ok", "upstream")
    assert (row["prompt_tokens"], row["completion_tokens"]) == (10, 12)
    assert agw.balance(uid) == usd("10.00") - priced(10, 12, w1=2)
    assert gateways.upstream.requests()[-1]["headers"]["anthropic-beta"] == beta["anthropic-beta"]


def test_stream_true_relays_every_event_and_is_billed_once(agw):
    uid, key = agw.user("10.00")
    events = list(
        client(agw, key).messages.create(
            model="claude", max_tokens=100, messages=user_says(PROMPT), stream=True
        )
    )
    kinds = [e.type for e in events]
    assert kinds[0] == "message_start"
    assert kinds[-2:] == ["message_delta", "message_stop"]
    # message_start says output_tokens 1, message_delta the cumulative 5: billed 5, not 6.
    row = agw.wait_usage(uid, 1)[0]
    assert (row["status"], row["completion_tokens"]) == ("ok", 5)
    assert agw.balance(uid) == usd("10.00") - priced(10, 5)


def test_a_tool_use_session_runs_end_to_end_and_its_ledger_adds_up(agw):
    uid, key = agw.user("10.00")
    claude = client(agw, key)
    messages: list[dict[str, Any]] = user_says(PROMPT)
    for _ in range(3):  # an agent loop: tool call, tool result, answer, again
        reply = claude.messages.create(
            model="claude", max_tokens=200, tools=TOOLS, messages=messages
        )
        assert reply.stop_reason == "tool_use"
        call = reply.content[-1]
        assert (call.type, call.name, call.input) == ("tool_use", "search", {"query": "mock"})
        messages += [
            {"role": "assistant", "content": [b.model_dump() for b in reply.content]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "found"}],
            },
        ]
        answer = claude.messages.create(
            model="claude", max_tokens=200, tools=TOOLS, messages=messages
        )
        assert answer.stop_reason == "end_turn"
        messages += [
            {"role": "assistant", "content": answer.content[0].text},
            {"role": "user", "content": "go on"},
        ]
    rows = agw.wait_usage(uid, 6)
    assert [r["status"] for r in rows] == ["ok"] * 6
    for row in rows:
        assert usd(row["cost"]) == priced(row["prompt_tokens"], row["completion_tokens"])
    assert agw.balance(uid) == usd("10.00") - sum(usd(r["cost"]) for r in rows)


def test_a_thinking_stream_bills_thinking_and_text(agw):
    uid, key = agw.user("10.00")
    with client(agw, key).messages.stream(
        model="claude",
        max_tokens=500,
        thinking={"type": "enabled", "budget_tokens": 200},
        messages=user_says(PROMPT),
    ) as stream:
        final = stream.get_final_message()
    assert [b.type for b in final.content] == ["thinking", "text"]
    assert final.content[0].thinking == "Let me think."
    row = agw.wait_usage(uid, 1)[0]
    assert (row["status"], row["completion_tokens"]) == ("ok", 8)  # 3 thinking + 5 text
    assert agw.balance(uid) == usd("10.00") - priced(10, 8)


def test_count_tokens_is_relayed_and_free(agw, gateways):
    uid, key = agw.user("10.00")
    counted = client(agw, key).messages.count_tokens(model="claude", messages=user_says(PROMPT))
    assert counted.input_tokens == 10
    sent = gateways.upstream.requests()[-1]
    assert (sent["path"], sent["body"]["model"]) == ("/v1/messages/count_tokens", "claude-mock-1")
    assert agw.usage(uid) == []
    assert agw.balance(uid) == usd("10.00")
    # A caller that sends no anthropic-version gets Anthropic's first one upstream; the key
    # may come as a Bearer token too.
    raw = httpx.post(
        f"{agw.base_url}/v1/messages/count_tokens",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "claude", "messages": user_says(PROMPT)},
    )
    assert (raw.status_code, raw.json()) == (200, {"input_tokens": 10})
    assert gateways.upstream.requests()[-1]["headers"]["anthropic-version"] == "2023-06-01"


def test_refusals_come_in_anthropics_shape_and_charge_nothing(agw, gateways):
    uid, key = agw.user("0.001")
    claude = client(agw, key)
    with pytest.raises(anthropic.APIStatusError) as poor:
        claude.messages.create(model="claude", max_tokens=1000, messages=user_says(PROMPT))
    assert poor.value.status_code == 402
    body: Any = poor.value.body
    assert (body["type"], body["error"]["type"]) == ("error", "billing_error")
    assert re.search(r"Set max_tokens to \d+ or less", body["error"]["message"])
    with pytest.raises(anthropic.AuthenticationError) as bad_key:
        client(agw, "sk-gw-wrong").messages.create(
            model="claude", max_tokens=10, messages=user_says(PROMPT)
        )
    assert bad_key.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    with pytest.raises(anthropic.NotFoundError) as unknown:
        claude.messages.create(model="claude-nope", max_tokens=10, messages=user_says(PROMPT))
    assert unknown.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    with pytest.raises(anthropic.BadRequestError):  # an OpenAI-API model is not served here
        claude.messages.create(model="chat", max_tokens=10, messages=user_says(PROMPT))
    missing = httpx.post(
        f"{agw.base_url}/v1/messages",
        headers={"x-api-key": key},
        json={"model": "claude", "messages": user_says(PROMPT)},
    )
    assert missing.status_code == 400
    assert missing.json()["error"] == {
        "type": "invalid_request_error",
        "message": "max_tokens: Field required",
    }
    with pytest.raises(anthropic.InternalServerError) as overloaded:  # 529 passed through
        client(agw, agw.user("10.00")[1]).messages.create(
            model="claude", max_tokens=10, messages=user_says(f"{PROMPT} [[mock:status=529]]")
        )
    assert overloaded.value.status_code == 529
    assert overloaded.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
    assert agw.usage(uid) == []
    assert agw.balance(uid) == usd("0.001")


def test_a_request_too_large_is_413_in_anthropics_shape(gateways, tmp_path):
    models = tmp_path / "claude.yaml"
    models.write_text(MODELS.format(base_url=gateways.upstream.base_url))
    gw = gateways.start(GATEWAY_MODELS=str(models), GATEWAY_MAX_BODY_BYTES="2048")
    uid, key = gw.user("10.00")
    with pytest.raises(anthropic.APIStatusError) as large:
        client(gw, key).messages.create(
            model="claude", max_tokens=10, messages=user_says("word " * 1000)
        )
    assert large.value.status_code == 413
    assert large.value.body["error"]["type"] == "request_too_large"  # type: ignore[index]
    assert gw.usage(uid) == []
    assert gw.balance(uid) == usd("10.00")


def test_a_client_gone_mid_stream_is_billed_what_was_produced(agw, gateways):
    uid, key = agw.user("10.00")
    stream = client(agw, key).messages.create(
        model="claude",
        max_tokens=1000,
        messages=user_says(f"{PROMPT} [[mock:chunks=200]] [[mock:chunk_delay=0.02]]"),
        stream=True,
    )
    seen = 0
    for event in stream:
        if event.type == "content_block_delta":
            seen += 1
            if seen == 5:
                break
    stream.close()
    row = agw.wait_usage(uid, 1)[0]
    assert row["status"] == "client_disconnected"
    # At least what the client was sent (5 pieces of one token each), far less than the cap.
    assert 5 <= row["completion_tokens"] < 200
    assert usd(row["cost"]) == priced(10, row["completion_tokens"])
    assert agw.balance(uid) == usd("10.00") - usd(row["cost"])


def test_concurrent_calls_of_one_user_never_overspend(agw):
    # Each call reserves its worst case (body-length prompt + 1000 output tokens at $15/1M =
    # $0.015 and a little): $0.05 covers a few at a time, never all 12.
    uid, key = agw.user("0.05")
    claude = client(agw, key)

    def one(_: int) -> str:
        try:
            claude.messages.create(model="claude", max_tokens=1000, messages=user_says(PROMPT))
        except anthropic.APIStatusError as exc:
            return f"refused {exc.status_code}"
        return "ok"

    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        results = list(pool.map(one, range(12)))
    served = results.count("ok")
    assert set(results) == {"ok", "refused 402"}
    rows = agw.wait_usage(uid, served)
    assert len(rows) == served
    spent = sum(usd(r["cost"]) for r in rows)
    assert spent == served * priced(10, 5)
    assert agw.balance(uid) == usd("0.05") - spent >= 0
