"""Uncapped streams on a small balance (issue 10 D): a hold that grows as the stream produces,
ended cleanly when the balance stops covering it, on both metering modes.

Model `m` costs $1.00 per 1M prompt tokens and $10.00 per 1M output tokens (1,000 and 10,000
nano-USD per token), max_output_tokens 1000, served by the project's mock, whose pieces
" w0", " w1", ... are one output token each (its directives, in the prompt, make the prompt
count implausible to the gateway unless ``stored`` adds to the reported prompt). The first
hold is 20 output tokens (GATEWAY_STREAM_HOLD_TOKENS), so growth is exercised within a few
pieces.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai.types.responses import ResponseErrorEvent

from gateway import tokens
from gateway.endpoints import ENDPOINTS
from gateway.metering.store import MemoryStore
from gateway.mock.runner import MockUpstreamThread
from gateway.pricing import Price, worst_case
from gateway.proxy import stream_hold
from gateway.proxy.stream_errors import CREDIT_EXHAUSTED, stream_error
from gateway.proxy.stream_hold import StreamHold
from gateway.quotes import Output, Quote
from tests.support.gateway import GatewayFactory, RunningGateway, usd

MODELS = """\
currency: usd
providers:
  mock: {{base_url: "{base_url}"}}
models:
  m:
    provider: mock
    upstream_model: up-model
    price: {{input: "1.00", cached_input: "0.10", output: "10.00"}}
    max_output_tokens: 1000
    context_window: 200000
  m-reasoning:
    provider: mock
    upstream_model: up-model
    price: {{input: "1.00", cached_input: "0.10", output: "10.00"}}
    max_output_tokens: 1000
    context_window: 200000
    hidden_reasoning: true
"""
PROMPT, OUTPUT = 1_000, 10_000  # nano-USD per token
SMALL = "0.005"  # 1000 output tokens would need $0.01


@pytest.fixture(params=["embedded", pytest.param("production", marks=pytest.mark.production)])
def metered(
    request: pytest.FixtureRequest, gateways: GatewayFactory, upstream: MockUpstreamThread
) -> Iterator[RunningGateway]:
    upstream.clear()
    gateways.models_file().write_text(MODELS.format(base_url=upstream.base_url))
    env = {"GATEWAY_STREAM_HOLD_TOKENS": "20"}
    if request.param == "production":
        env["GATEWAY_DATABASE_URL"] = request.getfixturevalue("pg_dsn")
        env["GATEWAY_REDIS_URL"] = request.getfixturevalue("redis_url")
    gw = gateways.start(**env)
    yield gw
    gw.stop()


def client(gw: RunningGateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.base_url}/v1", api_key=key, max_retries=0)


def account(gw: RunningGateway, uid: str) -> tuple[int, int]:
    view = gw.admin.get(f"/admin/users/{uid}").json()
    return usd(view["balance"]), usd(view["reserved"])


def sent(upstream: MockUpstreamThread) -> list[dict[str, Any]]:
    return [e for e in upstream.requests() if e["path"] == "/v1/chat/completions"]


def messages(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


def test_an_uncapped_stream_the_balance_cannot_cover_grows_its_hold_to_the_end(
    metered: RunningGateway, upstream: MockUpstreamThread
) -> None:
    uid, key = metered.user(SMALL)
    stream = client(metered, key).chat.completions.create(
        model="m",
        messages=messages("count [[mock:chunks=300]] [[mock:stored=30]]"),
        stream=True,
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "".join(f" w{i}" for i in range(300))
    # Forwarded with the cap the balance covers, as a whole answer would be.
    [call] = sent(upstream)
    cap = call["body"]["max_completion_tokens"]
    assert 450 < cap < 500
    [row] = metered.wait_usage(uid, 1)
    assert (row["status"], row["usage_source"]) == ("ok", "upstream")
    assert usd(row["cost"]) == row["prompt_tokens"] * PROMPT + 300 * OUTPUT
    # 300 pieces are ~1,400 bytes, more than the cap: the hold grew to cover it all.
    assert usd(row["overdraft"]) == 0
    assert account(metered, uid) == (usd(SMALL) - usd(row["cost"]), 0)


def test_a_stream_the_balance_stops_covering_is_ended_and_billed_for_what_was_sent(
    metered: RunningGateway, upstream: MockUpstreamThread
) -> None:
    uid, key = metered.user(SMALL)
    api = client(metered, key)
    stream = api.chat.completions.create(
        model="m",
        messages=messages("count [[mock:chunks=400]] [[mock:chunk_delay=0.1]]"),
        stream=True,
    )
    received: list[str] = []
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        others: list[concurrent.futures.Future[Any]] = []

        def read() -> None:
            for piece in stream:
                if piece.choices and piece.choices[0].delta.content:
                    received.append(piece.choices[0].delta.content)
                if not others:
                    # While the stream holds a slice, another call of the user is admitted
                    # for most of what is left (it could not be if the stream held its cap).
                    others.append(
                        pool.submit(
                            api.chat.completions.create,
                            model="m",
                            messages=messages("wait [[mock:delay=3]]"),
                            max_tokens=450,
                        )
                    )

        with pytest.raises(openai.APIError, match="Insufficient credit") as raised:
            read()
        assert others[0].result().choices[0].message.content == "Hello from the mock model."
    assert raised.value.code == "insufficient_quota"
    text = "".join(received)
    assert 0 < len(received) < 30
    assert text == "".join(f" w{i}" for i in range(len(received)))

    rows = {row["status"]: row for row in metered.wait_usage(uid, 2)}
    cut = rows["credit_exhausted"]
    assert cut["usage_source"] == "counted"
    # Billed for exactly what was sent: the text received, counted with the model's encoding.
    produced = tokens.count_text(tokens.model_encoder("up-model", None), text)
    assert cut["completion_tokens"] == produced
    assert usd(cut["cost"]) == cut["prompt_tokens"] * PROMPT + produced * OUTPUT
    assert usd(cut["overdraft"]) == 0  # the hold covered all that was sent
    # The upstream was closed: it wrote no more than a few pieces past the last one sent.
    streamed = next(e for e in sent(upstream) if e["body"].get("stream"))
    assert len(received) <= streamed.get("closed_after", 400) < 400
    balance, reserved = account(metered, uid)
    assert reserved == 0
    assert balance == usd(SMALL) - usd(cut["cost"]) - usd(rows["ok"]["cost"]) >= 0


def test_a_responses_stream_is_ended_with_a_responses_error_event(
    metered: RunningGateway, upstream: MockUpstreamThread
) -> None:
    uid, key = metered.user(SMALL)
    api = client(metered, key)
    events = api.responses.create(
        model="m", input="count [[mock:chunks=400]] [[mock:chunk_delay=0.1]]", stream=True
    )
    seen: list[Any] = []
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        other = None
        for event in events:
            seen.append(event)
            if other is None:
                other = pool.submit(
                    api.responses.create,
                    model="m",
                    input="wait [[mock:delay=3]]",
                    max_output_tokens=450,
                )
        assert other is not None
        other.result()
    last = seen[-1]
    assert (last.type, last.code) == ("error", "insufficient_quota")
    assert last.sequence_number == seen[-2].sequence_number + 1
    deltas = "".join(e.delta for e in seen if e.type == "response.output_text.delta")
    rows = {row["status"]: row for row in metered.wait_usage(uid, 2)}
    produced = tokens.count_text(tokens.model_encoder("up-model", None), deltas)
    assert rows["credit_exhausted"]["completion_tokens"] == produced > 0
    assert account(metered, uid)[1] == 0


@pytest.mark.parametrize(
    ("model", "extra"),
    [
        ("m-reasoning", {}),
        ("m", {"reasoning_effort": "low"}),
        ("m", {"modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "pcm16"}}),
    ],
    ids=["hidden-reasoning-model", "reasoning-asked", "audio-asked"],
)
def test_a_stream_that_may_bill_output_it_does_not_show_holds_its_whole_cap(
    metered: RunningGateway, upstream: MockUpstreamThread, model: str, extra: dict[str, Any]
) -> None:
    # Its text cannot bound what it bills, so nothing of what its cap needs is left for
    # another call (found by the newcomer trial: such a stream could overdraw the balance).
    uid, key = metered.user(SMALL)
    api = client(metered, key)
    stream = api.chat.completions.create(
        model=model,
        messages=messages("count [[mock:chunks=30]] [[mock:chunk_delay=0.05]]"),
        stream=True,
        extra_body=extra,
    )
    with stream:
        next(iter(stream))
        with pytest.raises(openai.APIStatusError) as refused:
            api.chat.completions.create(model="m", messages=messages("hi"), max_tokens=450)
        assert refused.value.status_code == 402
        "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    [row] = metered.wait_usage(uid, 1)
    assert row["status"] == "ok"
    assert account(metered, uid) == (usd(SMALL) - usd(row["cost"]), 0)


def test_which_streams_show_all_they_bill() -> None:
    shows = stream_hold.shows_all_output
    assert shows({"messages": []}, hidden_reasoning=False)
    assert shows({"modalities": ["text"]}, hidden_reasoning=False)
    assert not shows({"messages": []}, hidden_reasoning=True)
    assert not shows({"modalities": ["text", "audio"]}, hidden_reasoning=False)
    assert not shows({"audio": {"voice": "alloy"}}, hidden_reasoning=False)
    assert not shows({"reasoning_effort": "minimal"}, hidden_reasoning=False)
    assert not shows({"reasoning": {"effort": "low"}}, hidden_reasoning=False)


def test_the_operator_may_refuse_uncapped_streams_instead(
    gateways: GatewayFactory, upstream: MockUpstreamThread
) -> None:
    gateways.models_file().write_text(MODELS.format(base_url=upstream.base_url))
    gw = gateways.start(GATEWAY_UNCAPPED_CALLS="refuse")
    uid, key = gw.user(SMALL)
    with pytest.raises(openai.APIStatusError) as refused:
        client(gw, key).chat.completions.create(model="m", messages=messages("hi"), stream=True)
    assert refused.value.status_code == 402
    assert " to 499 or less" in refused.value.message
    assert account(gw, uid) == (usd(SMALL), 0)


# -- the hold on its own (in-process store) -----------------------------------------------

PRICE = Price(input=10**9, output=10**10)  # $1 / $10 per 1M tokens: 1,000 / 10,000 per token


def quote(held: int, cap: int = 1000, prompt: int = 10) -> Quote:
    reserve = worst_case(PRICE, prompt, held)
    return Quote(reserve, prompt, prompt, Output(cap), output_held=held)


def chunk(*texts: str) -> bytes:
    events = (
        b"data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": t}}]}).encode()
        for t in texts
    )
    return b"\n\n".join(events) + b"\n\n"


async def open_hold(balance: int, held: int, cap: int = 1000) -> tuple[MemoryStore, StreamHold]:
    async def load(user_id: str) -> tuple[int, int]:
        return balance, 1

    store = MemoryStore(load)
    q = quote(held, cap)
    assert (await store.admit("u", "r", q.reserve, ttl=60)).ok
    return store, StreamHold(store, q, PRICE, user_id="u", request_id="r", ttl=60)


def test_the_hold_grows_ahead_of_the_bytes_forwarded() -> None:
    async def main() -> None:
        store, hold = await open_hold(10**8, held=20)
        assert await hold.cover(chunk("x" * 20))  # 20 bytes: the first slice covers them
        assert (hold.held, hold.bound) == (20, 20)
        assert await hold.cover(chunk("é"))  # 2 more bytes: grown by a slice past the bound
        assert hold.held == 42
        assert await hold.cover(chunk("y" * 30))  # 52 > 42: doubled
        assert hold.held == 84
        assert hold.reserve == worst_case(PRICE, 10, 84)
        assert await store.snapshot("u") == (10**8, hold.reserve)
        assert hold.texts() == ["x" * 20 + "é" + "y" * 30]

    asyncio.run(main())


def test_the_hold_never_grows_past_the_cap() -> None:
    async def main() -> None:
        store, hold = await open_hold(10**8, held=20, cap=50)
        assert await hold.cover(chunk("z" * 500))  # more bytes than the cap: the cap bounds
        assert hold.held == 50
        assert await store.snapshot("u") == (10**8, worst_case(PRICE, 10, 50))

    asyncio.run(main())


def test_the_hold_takes_what_is_left_then_refuses_what_it_cannot_cover() -> None:
    async def main() -> None:
        balance = worst_case(PRICE, 10, 30)  # the prompt and 30 output tokens
        store, hold = await open_hold(balance, held=20)
        assert await hold.cover(chunk("a" * 25))  # 45 wanted, 30 fit: enough for 25
        assert hold.held == 30
        assert not await hold.cover(chunk("b" * 6))  # 31 > 30
        assert (hold.held, hold.bound) == (30, 25)
        assert hold.texts() == ["a" * 25]  # the refused piece is not counted as sent
        assert await store.snapshot("u") == (balance, balance)

    asyncio.run(main())


def test_a_store_that_cannot_answer_ends_the_stream() -> None:
    class Down(MemoryStore):
        async def admit(self, user_id: str, request_id: str, amount: int, *, ttl: float) -> Any:
            raise ConnectionError("store down")

    async def main() -> None:
        async def load(user_id: str) -> tuple[int, int]:
            return 10**8, 1

        hold = StreamHold(Down(load), quote(20), PRICE, user_id="u", request_id="r", ttl=60)
        assert await hold.cover(chunk("a" * 20))
        assert not await hold.cover(chunk("b"))

    asyncio.run(main())


def test_the_refusal_is_an_error_each_client_reads_in_its_endpoint_shape() -> None:
    chat = ENDPOINTS["chat/completions"]
    chat_events = stream_error(chat, CREDIT_EXHAUSTED).split(b"\n\n")
    error = json.loads(chat_events[0].removeprefix(b"data: "))["error"]
    assert (error["type"], error["code"]) == ("insufficient_quota", "insufficient_quota")
    assert chat_events[1:] == [b"data: [DONE]", b""]
    typed = stream_error(ENDPOINTS["responses"], CREDIT_EXHAUSTED, sequence_number=7)
    event, data = typed.split(b"\n", 1)
    assert event == b"event: error"
    parsed = ResponseErrorEvent.model_validate_json(data.removeprefix(b"data: ").strip())
    assert (parsed.code, parsed.sequence_number) == ("insufficient_quota", 7)
    # Anthropic's error event (docs.anthropic.com, streaming): the anthropic SDK raises on it.
    event, data = stream_error(ENDPOINTS["messages"], CREDIT_EXHAUSTED).split(b"\n", 1)
    assert event == b"event: error"
    assert json.loads(data.removeprefix(b"data: ")) == {
        "type": "error",
        "error": {"type": "billing_error", "message": CREDIT_EXHAUSTED.message},
    }
