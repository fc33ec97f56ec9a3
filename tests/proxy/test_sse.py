"""The stream relay is sans-IO: any chunking of the same bytes gives the same result."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from gateway.endpoints import CHAT_USAGE, RESPONSE_USAGE
from gateway.proxy.sse import StreamMeter


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
        meter.usage.completion_tokens,
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
    assert meter.produced_text() == "one two"


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
        meter.usage.completion_tokens,
        meter.usage.cached_tokens,
        meter.usage.reasoning_tokens,
    ) == (4, 9, 1, 5)
    assert meter.finished


def test_crlf_separated_events_are_relayed_intact() -> None:
    data = b'data: {"choices":[{"delta":{"content":"x"}}]}\r\n\r\ndata: [DONE]\r\n\r\n'
    meter = StreamMeter(CHAT_USAGE, hide_usage_chunk=True)
    assert feed_in(meter, data, [5, 30]) == data
    assert meter.finished
