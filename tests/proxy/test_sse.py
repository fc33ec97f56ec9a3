"""The stream relay is sans-IO: any chunking of the same bytes gives the same result."""

from __future__ import annotations

import json
from functools import reduce
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.endpoints import CHAT_USAGE, RESPONSE_USAGE
from gateway.proxy import sse as sse_module
from gateway.proxy.sse import StreamMeter
from gateway.usage_dialects import merge, normalize

FIXTURES = sorted((Path(__file__).parent.parent / "fixtures" / "usage").glob("*/*.json"))


def chat_stream(pieces: list[str], with_usage: bool = True) -> bytes:
    out = b""
    for p in pieces:
        chunk = {
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {"content": p}}],
            "usage": None,
        }
        out += b"data: " + orjson.dumps(chunk) + b"\n\n"
    if with_usage:
        out += (
            b'data: {"object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":7,'
            b'"completion_tokens":3,"prompt_tokens_details":{"cached_tokens":2}}}\n\n'
        )
    return out + b"data: [DONE]\n\n"


def feed_in(meter: StreamMeter, data: bytes, cuts: list[int]) -> bytes:
    out = b""
    last = 0
    for cut in sorted(set(cuts)):
        out += meter.feed(data[last:cut])
        last = cut
    out += meter.feed(data[last:])
    return out + meter.close()


@given(st.lists(st.integers(0, 2000), max_size=30))
def test_any_chunking_forwards_the_same_bytes_and_finds_usage(cuts: list[int]) -> None:
    data = chat_stream(["Hel", "lo", " wörld"])
    meter = StreamMeter(CHAT_USAGE, hide_usage_chunk=False)
    assert feed_in(meter, data, [c % (len(data) + 1) for c in cuts]) == data
    assert meter.usage is not None
    assert (
        meter.usage.prompt_tokens,
        meter.usage.output_tokens,
        meter.usage.cached_tokens,
    ) == (7, 3, 2)
    assert meter.finished


@given(st.lists(st.integers(0, 2000), max_size=30))
def test_hidden_usage_chunk_is_dropped_and_nothing_else(cuts: list[int]) -> None:
    data = chat_stream(["a", "b"])
    meter = StreamMeter(CHAT_USAGE, hide_usage_chunk=True)
    out = feed_in(meter, data, [c % (len(data) + 1) for c in cuts])
    assert out == chat_stream(["a", "b"], with_usage=False)
    assert meter.usage is not None


def test_stream_without_usage_keeps_what_was_produced() -> None:
    data = chat_stream(["one", " two"], with_usage=False)[: -len(b"data: [DONE]\n\n")]
    meter = StreamMeter(CHAT_USAGE, hide_usage_chunk=True)
    meter.feed(data[:40])
    meter.feed(data[40:])
    meter.close()
    assert meter.usage is None
    assert not meter.finished
    assert meter.produced_texts() == ["one two"]


def test_responses_stream_usage_comes_from_the_completed_event() -> None:
    completed = {
        "type": "response.completed",
        "response": {
            "usage": {
                "input_tokens": 4,
                "output_tokens": 9,
                "input_tokens_details": {"cached_tokens": 1},
                "output_tokens_details": {"reasoning_tokens": 5},
            }
        },
    }
    data = (
        b"event: response.output_text.delta\n"
        b'data: {"type":"response.output_text.delta","delta":"hi"}\n\n'
        b"event: response.completed\ndata: " + orjson.dumps(completed) + b"\n\n"
    )
    meter = StreamMeter(RESPONSE_USAGE, hide_usage_chunk=False)
    assert feed_in(meter, data, [17, 90]) == data
    assert meter.usage is not None
    assert (
        meter.usage.prompt_tokens,
        meter.usage.output_tokens,
        meter.usage.cached_tokens,
        meter.usage.reasoning_tokens,
    ) == (4, 9, 1, 5)
    assert meter.finished


def test_crlf_separated_events_are_relayed_intact() -> None:
    data = b'data: {"choices":[{"delta":{"content":"x"}}]}\r\n\r\ndata: [DONE]\r\n\r\n'
    meter = StreamMeter(CHAT_USAGE, hide_usage_chunk=True)
    assert feed_in(meter, data, [5, 30]) == data
    assert meter.finished


def sse(objs: list[Any]) -> bytes:
    return b"".join(b"data: " + orjson.dumps(o) + b"\n\n" for o in objs) + b"data: [DONE]\n\n"


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_recorded_usage_shape_is_caught_by_the_stream_relay(path: Path) -> None:
    # The relay parses only events holding a usage key: each of the normalizer's 82 recorded
    # shapes, sent as stream events, must reach it and fold to the normalizer's own answer.
    case = json.loads(path.read_text())
    events = [o for o in case["inputs"] if isinstance(o, dict)]
    want = reduce(merge, (normalize(o, dialect=case["dialect"]) for o in events), None)
    meter = StreamMeter(CHAT_USAGE, hide_usage_chunk=False, dialect=case["dialect"])
    data = sse(events)
    assert feed_in(meter, data, [len(data) // 3]) == data
    assert meter.usage == want


def vllm_stream(final: int) -> list[dict[str, Any]]:
    return [
        {
            "choices": [{"index": 0, "delta": {"content": f"w{i} "}}],
            "usage": {"prompt_tokens": 15, "completion_tokens": i, "total_tokens": 15 + i},
        }
        for i in range(1, final + 1)
    ] + [{"choices": [], "usage": {"prompt_tokens": 15, "completion_tokens": final}}]


@given(st.lists(st.integers(0, 5000), max_size=20))
def test_cumulative_usage_on_every_chunk_counts_once_at_its_final_figures(cuts: list[int]) -> None:
    data = sse(vllm_stream(5))
    meter = StreamMeter(CHAT_USAGE, hide_usage_chunk=True)
    out = feed_in(meter, data, [c % (len(data) + 1) for c in cuts])
    assert meter.usage is not None
    assert (meter.usage.prompt_tokens, meter.usage.output_tokens) == (15, 5)
    # only the usage-only chunk is hidden; the chunks with choices keep their usage
    assert out == sse(vllm_stream(5)[:-1])


def test_only_events_that_can_carry_usage_are_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    parsed: list[bytes] = []
    real = sse_module._load
    monkeypatch.setattr(sse_module, "_load", lambda data: parsed.append(data) or real(data))
    quiet = [
        b'{"choices":[{"index":0,"delta":{"content":"say \\"usage\\": {1}"}}],"usage":null}',
        b'{"choices":[{"index":0,"delta":{"content":"timings"}}]}',
    ]
    loud = [
        b'{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1}}',
        b'{"done":true,"prompt_eval_count":4,"eval_count":2}',
        b'{"choices":[],"timings":{"prompt_n":5,"predicted_n":2}}',
    ]
    meter = StreamMeter(CHAT_USAGE, hide_usage_chunk=False)
    for data in quiet + loud:
        meter.feed(b"data: " + data + b"\n\n")
    assert parsed == loud
    assert meter.usage is not None
    assert (meter.usage.prompt_tokens, meter.usage.output_tokens) == (5, 2)


def test_choices_are_counted_apart_from_their_interleaved_deltas() -> None:
    texts = ["Red apples grow.", "Bananas are long.", "Cherries."]
    words = [t.split(" ") for t in texts]
    chunks = [
        {"choices": [{"index": i, "delta": {"content": ws[w] + " " * (w < len(ws) - 1)}}]}
        for w in range(3)
        for i, ws in enumerate(words)
        if w < len(ws)
    ]
    meter = StreamMeter(CHAT_USAGE, hide_usage_chunk=True)
    meter.feed(sse(chunks))
    assert meter.usage is None
    assert meter.produced_texts() == texts
