"""Anthropic's Messages API end to end: the official ``anthropic`` SDK against a real gateway
in front of the mock upstream's Anthropic side (gateway.mock.anthropic), in embedded and
production mode. Model `claude`: $3 in, $0.30 cache reads, $3.75 / $6 cache writes (5m / 1h),
$15 out per 1M tokens, so every cost below is a whole number of nano-USD per token, and $10 per
1,000 web searches ($0.01 each)."""

from __future__ import annotations

import concurrent.futures
import re
import signal
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest

from gateway.money import format_usd
from gateway.pricing import Price, Usage, cost, worst_case
from tests.support.gateway import PROVIDER_KEY, GatewayFactory, RunningGateway, start_in_mode, usd
from tests.support.processes import GatewayProcess

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
             output: "15.00", web_search: "10.00"}}
    max_output_tokens: 1000
    context_window: 200000
    beta_context_windows: {{context-1m-2025-08-07: 1000000}}
    image_tokens: 1600
  claude-unsearched:
    provider: claude-api
    upstream_model: claude-mock-1
    price: {{input: "3.00", output: "15.00"}}
    max_output_tokens: 1000
    context_window: 200000
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
    web_search=10_000_000_000,
)
PROMPT = "one two three four five six seven eight nine ten"  # 10 mock tokens
TOOLS = [
    {
        "name": "search",
        "description": "Search the docs.",
        "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}},
    }
]


def priced(
    prompt: int, output: int, *, cached: int = 0, w5: int = 0, w1: int = 0, searches: int = 0
) -> int:
    usage = Usage(
        prompt_tokens=prompt,
        completion_tokens=output,
        cached_tokens=cached,
        cache_write_tokens=w5 + w1,
        cache_write_1h_tokens=w1,
        web_search_requests=searches,
    )
    return cost(PRICE, usage)


@pytest.fixture(params=["embedded", pytest.param("production", marks=pytest.mark.production)])
def agw(request: pytest.FixtureRequest, gateways: GatewayFactory, tmp_path: Path) -> RunningGateway:
    return start_in_mode(request, gateways, tmp_path, MODELS)


OPENED: list[anthropic.Anthropic] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    # A client dropped with a connection still open warns when it is collected, in whichever
    # test that happens (warnings are errors here): each test closes its own.
    yield
    while OPENED:
        OPENED.pop().close()


def client(gw: RunningGateway, key: str, *, bearer: bool = False) -> anthropic.Anthropic:
    auth: dict[str, Any] = {"auth_token": key} if bearer else {"api_key": key}
    opened = anthropic.Anthropic(base_url=gw.base_url, max_retries=0, **auth)
    OPENED.append(opened)
    return opened


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
    # $0.015 and a little): $0.05 covers a few at a time, never all 12. The upstream answers
    # after a second, so the calls overlap even on a loaded machine (served one after the
    # other, all 12 would fit).
    uid, key = agw.user("0.05")
    claude = client(agw, key)

    def one(_: int) -> str:
        try:
            claude.messages.create(
                model="claude", max_tokens=1000, messages=user_says(f"{PROMPT} [[mock:delay=1]]")
            )
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


WEB_SEARCH = {"type": "web_search_20250305", "name": "web_search"}
# The mock's search results: RESULT_TOKENS input tokens per search, and each server_tool_use
# block TOOL_TOKENS output tokens (gateway.mock.anthropic).
RESULT_TOKENS, TOOL_TOKENS = 100, 5


def test_web_searches_are_billed_per_request_and_their_results_as_input(agw, gateways):
    uid, key = agw.user("10.00")
    reply = client(agw, key).messages.create(
        model="claude",
        max_tokens=200,
        tools=[{**WEB_SEARCH, "max_uses": 3}],
        messages=user_says(f"{PROMPT} [[mock:web_searches=2]]"),
    )
    kinds = [b.type for b in reply.content]
    assert kinds == ["server_tool_use", "web_search_tool_result"] * 2 + ["text"]
    assert reply.usage.server_tool_use is not None
    assert reply.usage.server_tool_use.web_search_requests == 2
    row = agw.wait_usage(uid, 1)[0]
    prompt, output = 10 + 2 * RESULT_TOKENS, 2 * TOOL_TOKENS + 5
    assert (row["prompt_tokens"], row["completion_tokens"]) == (prompt, output)
    assert row["web_search_requests"] == 2
    assert row["price_per_1k_requests"] == {"web_search": "10.00"}
    # $0.01 per search on top of the tokens: 2 x 10,000,000 nano-USD.
    assert priced(prompt, output, searches=2) == priced(prompt, output) + 20_000_000
    assert usd(row["cost"]) == priced(prompt, output, searches=2)
    assert agw.balance(uid) == usd("10.00") - priced(prompt, output, searches=2)
    # The caller's max_uses went upstream as sent.
    assert gateways.upstream.requests()[-1]["body"]["tools"][0]["max_uses"] == 3


def test_a_streamed_search_is_billed_from_the_last_message_delta(agw, gateways):
    uid, key = agw.user("10.00")
    with client(agw, key).messages.stream(
        model="claude",
        max_tokens=200,
        tools=[WEB_SEARCH],
        messages=user_says(f"{PROMPT} [[mock:web_searches=3]]"),
    ) as stream:
        final = stream.get_final_message()
    assert [b.type for b in final.content].count("server_tool_use") == 3
    # No max_uses from the caller: the gateway wrote the bound it reserved.
    assert gateways.upstream.requests()[-1]["body"]["tools"][0]["max_uses"] == 10
    row = agw.wait_usage(uid, 1)[0]
    prompt, output = 10 + 3 * RESULT_TOKENS, 3 * TOOL_TOKENS + 5
    # message_start said 10 input tokens and no search; message_delta the grown totals.
    assert (row["prompt_tokens"], row["completion_tokens"]) == (prompt, output)
    assert row["web_search_requests"] == 3
    assert agw.balance(uid) == usd("10.00") - priced(prompt, output, searches=3)


def test_a_search_reserves_the_context_window_and_every_allowed_request(agw):
    # A search reserves what the 200k window leaves for its results at the input price ($3/1M:
    # about $0.60), up to 10 searches ($0.10) and 200 output tokens: $0.65 is not enough.
    # Refused, nothing charged; the same call without search is served.
    uid, key = agw.user("0.65")
    claude = client(agw, key)
    with pytest.raises(anthropic.APIStatusError) as poor:
        claude.messages.create(
            model="claude", max_tokens=200, tools=[WEB_SEARCH], messages=user_says(PROMPT)
        )
    assert poor.value.status_code == 402
    message = poor.value.body["error"]["message"]  # type: ignore[index]
    assert "(200000 prompt tokens + up to 200 output tokens)" in message
    assert "up to 10 web searches" in message
    assert "Lower the search tool's max_uses" in message
    results = int(message.split("results are reserved at ")[1].split()[0])
    body = 200_000 - results  # the body's free bound, at the dearest input price
    assert 0 < body < 1_000
    # The body at the dearest input price ($6, a 1-hour cache write), the results at $3.
    reserve = worst_case(PRICE, body, 200, web_searches=10, search_results=results)
    assert reserve == body * 6_000 + results * 3_000 + 200 * 15_000 + 10 * 10_000_000
    assert f"may cost up to ${format_usd(reserve)} " in message
    assert agw.usage(uid) == []
    claude.messages.create(model="claude", max_tokens=200, messages=user_says(PROMPT))
    assert agw.balance(uid) == usd("0.65") - priced(10, 5)


def test_bad_or_unpriced_search_tools_are_refused_in_anthropics_shape(agw, gateways):
    uid, key = agw.user("10.00")
    claude = client(agw, key)
    sent = len(gateways.upstream.requests())
    with pytest.raises(anthropic.BadRequestError) as bad:
        claude.messages.create(
            model="claude",
            max_tokens=10,
            tools=[{**WEB_SEARCH, "max_uses": 0}],
            messages=user_says(PROMPT),
        )
    assert bad.value.body["error"] == {  # type: ignore[index]
        "type": "invalid_request_error",
        "message": "tools.0.max_uses: must be a positive integer",
    }
    with pytest.raises(anthropic.BadRequestError) as unpriced:
        claude.messages.create(
            model="claude-unsearched", max_tokens=10, tools=[WEB_SEARCH], messages=user_says(PROMPT)
        )
    assert "no web_search price" in unpriced.value.body["error"]["message"]  # type: ignore[index]
    assert len(gateways.upstream.requests()) == sent
    assert agw.usage(uid) == []
    assert agw.balance(uid) == usd("10.00")


def test_searches_a_cut_stream_showed_are_billed_though_no_report_counted_them(agw):
    uid, key = agw.user("10.00")
    # Events: search 1 (start, 2 deltas, stop), its result (start, stop), then the start of
    # search 2 is the 7th and last event before the connection drops: no message_delta.
    with httpx.stream(
        "POST",
        f"{agw.base_url}/v1/messages",
        headers={"x-api-key": key},
        json={
            "model": "claude",
            "max_tokens": 200,
            "stream": True,
            "tools": [WEB_SEARCH],
            "messages": user_says(f"{PROMPT} [[mock:web_searches=2]] [[mock:cut_after=7]]"),
        },
    ) as response:
        relayed = b"".join(response.iter_bytes())
    assert relayed.count(b'"type":"server_tool_use"') == 2
    assert b"message_delta" not in relayed
    row = agw.wait_usage(uid, 1)[0]
    assert row["status"] == "upstream_cut"
    assert row["web_search_requests"] == 2
    assert usd(row["cost"]) == priced(row["prompt_tokens"], row["completion_tokens"], searches=2)
    assert agw.balance(uid) == usd("10.00") - usd(row["cost"])


def test_sigterm_lets_messages_streams_finish_and_settles_them(gateways, tmp_path):
    models = tmp_path / "claude.yaml"
    models.write_text(MODELS.format(base_url=gateways.upstream.base_url))
    gateway = GatewayProcess(gateways, GATEWAY_MODELS=str(models))
    uid, key = gateway.user("5")
    under_way = [threading.Event() for _ in range(3)]
    finals: list[Any] = []

    def stream(started: threading.Event) -> None:
        claude = anthropic.Anthropic(base_url=gateway.base_url, api_key=key, max_retries=0)
        with claude.messages.stream(
            model="claude",
            max_tokens=100,
            messages=user_says(f"{PROMPT} [[mock:chunks=20]] [[mock:chunk_delay=0.05]]"),
        ) as events:
            for _ in events:
                started.set()
            finals.append(events.get_final_message())

    threads = [threading.Thread(target=stream, args=(e,)) for e in under_way]
    for t in threads:
        t.start()
    for e in under_way:
        assert e.wait(20)  # every stream has begun before the signal
    gateway.proc.send_signal(signal.SIGTERM)
    for t in threads:
        t.join(30)
    assert gateway.terminate() == 0
    assert [f.stop_reason for f in finals] == ["end_turn"] * 3
    assert all(f.content[0].text.count(" w") == 20 for f in finals)
    db = sqlite3.connect(gateway.settings.database_url.removeprefix("sqlite:///"))
    rows = db.execute(
        "SELECT status, prompt_tokens, completion_tokens, cost FROM usage_records"
        " WHERE user_id = ?",
        (uid,),
    ).fetchall()
    balance = db.execute("SELECT balance FROM users WHERE id = ?", (uid,)).fetchone()[0]
    entries = db.execute(
        "SELECT SUM(amount) FROM ledger_entries WHERE user_id = ?", (uid,)
    ).fetchone()[0]
    db.close()
    assert [r[:3] for r in rows] == [("ok", 10, 20)] * 3
    assert all(r[3] == priced(10, 20) for r in rows)
    assert balance == entries == usd("5") - 3 * priced(10, 20)


def test_key_limits_model_lists_and_attribution_apply_to_messages(agw):
    uid, _ = agw.user("10.00")
    r = agw.admin.post(
        f"/admin/users/{uid}/keys", json={"limits": {"rpm": 2}, "models": ["claude*"]}
    )
    assert r.status_code == 201, r.text
    with client(agw, r.json()["key"]) as claude:
        limited = _limited(claude)
    assert limited.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    assert 1 <= int(limited.response.headers["retry-after"]) <= 60
    other = agw.admin.post(f"/admin/users/{uid}/keys", json={"models": ["gpt-*"]}).json()["key"]
    with client(agw, other) as barred, pytest.raises(anthropic.PermissionDeniedError) as denied:
        barred.messages.create(model="claude", max_tokens=10, messages=user_says(PROMPT))
    assert denied.value.body["error"]["type"] == "permission_error"  # type: ignore[index]
    rows = agw.wait_usage(uid, 2)
    tagged = next(r for r in rows if r["tags"])
    assert (tagged["end_user"], tagged["tags"], tagged["session_id"]) == (
        "agent-user-7",
        ["agent", "team:core"],
        "s-1",
    )
    report = agw.admin.get(f"/admin/users/{uid}/stats", params={"group_by": "tag"}).json()
    assert {g["tag"]: g["requests"] for g in report["groups"]} == {
        "agent": 1,
        "team:core": 1,
        None: 1,
    }
    assert agw.balance(uid) == usd("10.00") - 2 * priced(10, 5)


def _limited(claude: anthropic.Anthropic) -> anthropic.RateLimitError:
    """Two calls on a key limited to 2 rpm, then the third's refusal."""
    first = claude.messages.with_raw_response.create(
        model="claude",
        max_tokens=10,
        metadata={"user_id": "agent-user-7"},
        messages=user_says(PROMPT),
        extra_headers={"x-gateway-tags": "agent,team:core", "x-gateway-session-id": "s-1"},
    )
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    claude.messages.create(model="claude", max_tokens=10, messages=user_says(PROMPT))
    with pytest.raises(anthropic.RateLimitError) as limited:
        claude.messages.create(model="claude", max_tokens=10, messages=user_says(PROMPT))
    return limited.value


def test_the_1m_context_beta_opens_the_larger_window_for_that_request_only(agw, gateways):
    # A search holds what the window leaves for its results at the input price: about 200k
    # tokens ($0.60) + 10 searches ($0.10) + 200 output fit $1.50; with the 1M beta the
    # window is 1M tokens ($3.00) and does not.
    uid, key = agw.user("1.50")
    claude = client(agw, key)
    beta = {"anthropic-beta": "fine-grained-tool-streaming-2025-05-14, context-1m-2025-08-07"}
    with pytest.raises(anthropic.APIStatusError) as poor:
        claude.messages.create(
            model="claude",
            max_tokens=200,
            tools=[WEB_SEARCH],
            messages=user_says(PROMPT),
            extra_headers=beta,
        )
    assert poor.value.status_code == 402
    assert "(1000000 prompt tokens" in poor.value.body["error"]["message"]  # type: ignore[index]
    claude.messages.create(
        model="claude", max_tokens=200, tools=[WEB_SEARCH], messages=user_says(PROMPT)
    )
    assert gateways.upstream.requests()[-1]["headers"].get("anthropic-beta") is None
    row = agw.wait_usage(uid, 1)[0]
    assert row["web_search_requests"] == 1


def test_images_and_documents_are_billed_as_reported_never_as_their_bytes(agw):
    # Newcomer trial of issue 13: a base64 image was counted as text (96,582 tokens for a
    # 100 KB PNG) and billed instead of the provider's count. The mock reports the stored
    # 1,600 tokens an image costs upstream, plus the 10 words of text.
    import base64
    import os

    uid, key = agw.user("10.00")
    data = base64.b64encode(os.urandom(75_000)).decode()
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": data}}
    pdf = {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": data},
    }
    for blocks in (
        [image],
        [pdf],
        [{"type": "tool_result", "tool_use_id": "t", "content": [image]}],
    ):
        content = [*blocks, {"type": "text", "text": f"{PROMPT} [[mock:stored=1600]]"}]
        client(agw, key).messages.create(
            model="claude", max_tokens=10, messages=[{"role": "user", "content": content}]
        )
    rows = agw.wait_usage(uid, 3)
    assert [(r["prompt_tokens"], r["usage_source"]) for r in rows] == [(1610, "upstream")] * 3
    assert agw.balance(uid) == usd("10.00") - 3 * priced(1610, 5)


def test_two_different_keys_are_refused_and_a_missing_one_names_both_headers(agw):
    uid, key = agw.user("10.00")
    _, other = agw.user("10.00")
    body = {"model": "claude", "max_tokens": 10, "messages": user_says(PROMPT)}
    both = httpx.post(
        f"{agw.base_url}/v1/messages",
        headers={"x-api-key": key, "Authorization": f"Bearer {other}"},
        json=body,
    )
    assert both.status_code == 401
    assert both.json()["error"]["type"] == "authentication_error"
    assert "Two different API keys" in both.json()["error"]["message"]
    same = httpx.post(
        f"{agw.base_url}/v1/messages",
        headers={"x-api-key": key, "Authorization": f"Bearer {key}"},
        json=body,
    )
    assert same.status_code == 200
    missing = httpx.post(f"{agw.base_url}/v1/messages", json=body)
    assert missing.status_code == 401
    assert "'x-api-key: <key>'" in missing.json()["error"]["message"]
    assert len(agw.wait_usage(uid, 1)) == 1


def test_a_cut_stream_ends_with_an_error_event_the_sdk_raises_on(agw):
    # Newcomer trial of issue 13: the SDK returned a truncated answer as if it were whole.
    uid, key = agw.user("10.00")
    seen: list[str] = []

    def read() -> None:
        with client(agw, key).messages.stream(
            model="claude",
            max_tokens=100,
            messages=user_says(f"{PROMPT} [[mock:chunks=10]] [[mock:cut_after=4]]"),
        ) as stream:
            seen.extend(stream.text_stream)

    with pytest.raises(anthropic.APIStatusError) as cut:
        read()
    assert cut.value.body["error"]["type"] == "api_error"  # type: ignore[index]
    assert "upstream connection ended" in cut.value.message
    assert "".join(seen) == " w0 w1 w2"
    row = agw.wait_usage(uid, 1)[0]
    assert row["status"] == "upstream_cut"
    assert usd(row["cost"]) == priced(row["prompt_tokens"], row["completion_tokens"])
