"""OpenAI's Responses web search tool, billed per call through the official openai SDK: a real
gateway (embedded, and production on PostgreSQL + Redis), the real mock upstream over sockets.

The mock (gateway.mock.upstream) answers a request with a ``web_search`` tool with
``web_searches=N`` ``web_search_call`` output items, each adding RESULT_TOKENS input tokens that
usage reports, and no count of the calls in usage, as OpenAI does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import orjson
import pytest

from gateway.mock.anthropic import RESULT_TOKENS
from gateway.mock.replay import Recording
from gateway.pricing import Price, Usage, cost, worst_case
from tests.support.gateway import GatewayFactory, RunningGateway, start_in_mode, usd

MODELS = """\
currency: usd
providers:
  mock:
    base_url: {base_url}
    api_key_env: MOCK_PROVIDER_KEY
models:
  searched:
    provider: mock
    upstream_model: mock-gpt
    price: {{input: "2.50", output: "10.00", web_search: "10.00"}}
    max_output_tokens: 1000
    context_window: 128000
  unsearched:
    provider: mock
    upstream_model: mock-gpt
    price: {{input: "2.50", output: "10.00"}}
    max_output_tokens: 1000
    context_window: 128000
"""
PRICE = Price(input=2_500_000_000, output=10_000_000_000, web_search=10_000_000_000)
PROMPT = "one two three four five six seven eight nine ten"  # 10 mock tokens
SEARCH = [{"type": "web_search"}]


def priced(prompt: int, output: int, searches: int = 0) -> int:
    usage = Usage(prompt_tokens=prompt, completion_tokens=output, web_search_requests=searches)
    return cost(PRICE, usage)


@pytest.fixture(params=["embedded", pytest.param("production", marks=pytest.mark.production)])
def rgw(request: pytest.FixtureRequest, gateways: GatewayFactory, tmp_path: Path) -> RunningGateway:
    return start_in_mode(request, gateways, tmp_path, MODELS)


def sent(gateways: GatewayFactory) -> dict[str, Any]:
    body: dict[str, Any] = gateways.upstream.requests()[-1]["body"]
    return body


def test_searches_are_billed_per_call_and_their_content_as_input(rgw, gateways):
    uid, key = rgw.user("10.00")
    reply = rgw.client(key).responses.create(
        model="searched",
        input=f"{PROMPT} [[mock:web_searches=2]]",
        tools=SEARCH,
        max_output_tokens=100,
    )
    assert [item.type for item in reply.output] == ["web_search_call"] * 2 + ["message"]
    assert reply.output_text == "Hello from the mock model."
    row = rgw.wait_usage(uid, 1)[0]
    prompt = 10 + 2 * RESULT_TOKENS
    assert (row["status"], row["usage_source"]) == ("ok", "upstream")
    assert (row["prompt_tokens"], row["completion_tokens"]) == (prompt, 5)
    assert row["web_search_requests"] == 2
    assert row["price_per_1k_requests"] == {"web_search": "10.00"}
    # $0.01 per call on top of the tokens.
    assert priced(prompt, 5, 2) == priced(prompt, 5) + 20_000_000
    assert usd(row["cost"]) == priced(prompt, 5, 2)
    assert rgw.balance(uid) == usd("10.00") - priced(prompt, 5, 2)
    # No max_tool_calls from the caller: the gateway wrote the bound it reserved, and the tool
    # went as sent (OpenAI refuses fields its tools do not have).
    assert sent(gateways)["max_tool_calls"] == 10
    assert sent(gateways)["tools"] == SEARCH


def test_a_streamed_answer_bills_the_searches_of_its_completed_event(rgw, gateways):
    uid, key = rgw.user("10.00")
    events = list(
        rgw.client(key).responses.create(
            model="searched",
            input=f"{PROMPT} [[mock:web_searches=5]]",
            tools=[{"type": "web_search_2025_08_26"}],
            max_tool_calls=3,
            stream=True,
        )
    )
    done = [e.item.type for e in events if e.type == "response.output_item.done"]
    assert done == ["web_search_call"] * 3 + ["message"]
    assert events[-1].type == "response.completed"
    # The caller's bound went upstream as sent and held the searches to 3.
    assert sent(gateways)["max_tool_calls"] == 3
    row = rgw.wait_usage(uid, 1)[0]
    prompt = 10 + 3 * RESULT_TOKENS
    assert (row["status"], row["prompt_tokens"], row["completion_tokens"]) == ("ok", prompt, 5)
    assert row["web_search_requests"] == 3
    assert rgw.balance(uid) == usd("10.00") - priced(prompt, 5, 3)


def test_a_stream_cut_mid_search_bills_every_search_it_showed(rgw):
    uid, key = rgw.user("10.00")
    # After response.in_progress, each search is 5 events (added, in_progress, searching,
    # completed, done): the cut falls after the 7th, inside the second search.
    stream = rgw.client(key).responses.create(
        model="searched",
        input=f"{PROMPT} [[mock:web_searches=3]] [[mock:cut_after=7]]",
        tools=SEARCH,
        stream=True,
    )
    seen = list(stream)
    # The gateway ends the cut stream with a Responses error event, which the SDK yields.
    assert (seen[-1].type, seen[-1].code) == ("error", "upstream_cut")
    added = [e for e in seen if e.type == "response.output_item.added"]
    assert [e.item.type for e in added] == ["web_search_call"] * 2
    assert "response.completed" not in {e.type for e in seen}
    row = rgw.wait_usage(uid, 1)[0]
    assert row["status"] == "upstream_cut"
    # The first search (added and done) counts once, the second from its start.
    assert row["web_search_requests"] == 2
    billed = priced(row["prompt_tokens"], row["completion_tokens"], 2)
    assert usd(row["cost"]) == billed
    assert rgw.balance(uid) == usd("10.00") - billed


def test_an_answer_without_usage_still_bills_its_searches(rgw):
    uid, key = rgw.user("10.00")
    rgw.client(key).responses.create(
        model="searched",
        input=f"{PROMPT} [[mock:web_searches=2]] [[mock:no_usage=1]]",
        tools=SEARCH,
    )
    row = rgw.wait_usage(uid, 1)[0]
    assert (row["usage_source"], row["web_search_requests"]) == ("counted", 2)
    billed = priced(row["prompt_tokens"], row["completion_tokens"], 2)
    assert usd(row["cost"]) == billed
    assert rgw.balance(uid) == usd("10.00") - billed


def test_unpriced_preview_and_bad_bounds_are_refused_in_openais_shape(rgw, gateways):
    uid, key = rgw.user("10.00")
    client = rgw.client(key)
    before = len(gateways.upstream.requests())
    refusals = [
        ({"model": "unsearched", "tools": SEARCH}, "tools", "unpriced_tool", "no web_search price"),
        (
            {"model": "searched", "tools": [{"type": "web_search_preview"}]},
            "tools.0.type",
            "unpriced_tool",
            'Use {"type": "web_search"}',
        ),
        (
            {"model": "searched", "tools": SEARCH, "max_tool_calls": 0},
            "max_tool_calls",
            "invalid_value",
            "max_tool_calls: must be a positive integer",
        ),
    ]
    for body, param, code, says in refusals:
        with pytest.raises(openai.BadRequestError) as refused:
            client.responses.create(input=PROMPT, **body)
        error = refused.value.body
        assert isinstance(error, dict)
        assert (error["param"], error["code"], error["type"]) == (
            param,
            code,
            "invalid_request_error",
        )
        assert says in error["message"]
    assert len(gateways.upstream.requests()) == before
    assert rgw.usage(uid) == []
    assert rgw.balance(uid) == usd("10.00")


def test_a_search_reserves_its_bound_of_calls_and_the_context_window(rgw, gateways):
    # 10 calls ($0.10) and the results (what the 128k window leaves, at $2.50/1M: ~$0.32) do
    # not fit in $0.40; a caller's max_tool_calls of 2 ($0.02) does.
    uid, key = rgw.user("0.40")
    client = rgw.client(key)
    with pytest.raises(openai.APIStatusError) as poor:
        client.responses.create(model="searched", input=PROMPT, tools=SEARCH, max_output_tokens=100)
    assert poor.value.status_code == 402
    message = poor.value.body["message"]  # type: ignore[index]
    assert "up to 10 web searches" in message
    assert "Lower max_tool_calls" in message
    results = int(message.split("results are reserved at ")[1].split()[0])
    body = 128_000 - results
    assert 0 < body < 1_000
    reserve = worst_case(PRICE, body, 100, web_searches=10, search_results=results)
    assert reserve == body * 2_500 + results * 2_500 + 100 * 10_000 + 10 * 10_000_000
    assert rgw.usage(uid) == []
    client.responses.create(
        model="searched", input=PROMPT, tools=SEARCH, max_output_tokens=100, max_tool_calls=2
    )
    row = rgw.wait_usage(uid, 1)[0]
    assert row["web_search_requests"] == 1  # the mock searches once by default
    assert rgw.balance(uid) == usd("0.40") - priced(10 + RESULT_TOKENS, 5, 1)


def test_calls_without_search_and_chat_completions_are_unchanged(rgw, gateways):
    uid, key = rgw.user("10.00")
    client = rgw.client(key)
    client.responses.create(model="unsearched", input=PROMPT)
    assert "max_tool_calls" not in sent(gateways)
    # Chat Completions has no billed tool: its tools are the caller's business, never read,
    # refused or bounded by the gateway, and nothing is billed per search.
    client.chat.completions.create(
        model="unsearched",
        messages=[{"role": "user", "content": f"{PROMPT} [[mock:web_searches=2]]"}],
        extra_body={"tools": SEARCH},
    )
    assert sent(gateways)["tools"] == SEARCH
    assert "max_tool_calls" not in sent(gateways)
    rows = rgw.wait_usage(uid, 2)
    assert [r["web_search_requests"] for r in rows] == [0, 0]
    assert rgw.balance(uid) == usd("10.00") - 2 * priced(10, 5)


def test_searches_beyond_the_reserved_bound_are_all_billed(rgw, gateways):
    # An upstream that ignores max_tool_calls: 4 calls where 1 was reserved. Each shows as one
    # item however many events name it (the same id twice: counted once).
    calls = [{"id": f"ws_{i}", "type": "web_search_call", "status": "completed"} for i in range(4)]
    usage = {"input_tokens": 410, "output_tokens": 5, "total_tokens": 415}
    answer = {"id": "resp_1", "object": "response", "output": [*calls, calls[0]], "usage": usage}
    name = gateways.upstream.record(
        Recording(headers=(("Content-Type", "application/json"),), body=orjson.dumps(answer))
    )
    uid, key = rgw.user("10.00")
    rgw.client(key).responses.create(
        model="searched",
        input=f"{PROMPT} [[mock:replay={name}]]",
        tools=SEARCH,
        max_tool_calls=1,
        max_output_tokens=100,
    )
    row = rgw.wait_usage(uid, 1)[0]
    assert row["web_search_requests"] == 4
    billed = priced(410, 5, 4)
    assert usd(row["cost"]) == billed
    # One call was reserved, four are billed: here the unused reservation for search content
    # covers them (no overdraft); beyond it they would be overdraft, billed all the same.
    assert usd(row["overdraft"]) == 0
    assert rgw.balance(uid) == usd("10.00") - billed
