"""Upstream answers as they really come, relayed and metered (issue 11 A; cases BH-07, BH-08,
BH-19 of /work/shared/cases): compressed although identity was asked for, streams labelled as
something else, streams that end without the exact ``data: [DONE]\\n\\n``. Each answer is a
recording the mock upstream replays over a real socket; the client is the openai SDK.

Prices are the cases': model `m` costs 1,000 nano-USD a prompt token, 10,000 an output token.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Callable

import brotli
import orjson
import pytest

from tests.support.replayed import (  # noqa: F401  (relay_fixture: the `relay` fixture)
    JSON,
    SSE,
    Raw,
    Relay,
    chunked,
    raw_chat,
    raw_responses,
    read_chat,
    relay_fixture,
    streamed,
    whole,
)
from tests.support.scripted import DONE, chunk, completion, cost, sse, typed

try:
    from compression import zstd  # type: ignore[import-not-found,unused-ignore]
except ImportError:
    from backports import zstd


def raw_deflate(data: bytes) -> bytes:
    obj = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return obj.compress(data) + obj.flush()


CODINGS: dict[str, tuple[str, Callable[[bytes], bytes]]] = {
    "gzip": ("gzip", gzip.compress),
    "x-gzip": ("x-gzip", gzip.compress),
    "deflate": ("deflate", zlib.compress),
    "raw-deflate": ("deflate", raw_deflate),
    "br": ("br", brotli.compress),
    "zstd": ("zstd", zstd.compress),
    "gzip-then-br": ("gzip, br", lambda d: brotli.compress(gzip.compress(d))),
}

# -- BH-07: an answer compressed although identity was asked for ------------------------------

USAGE_10_5 = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
ANSWER = json.dumps(completion("Hello there friend", USAGE_10_5)).encode()
STREAM = sse(chunk("Hello there friend", "stop")) + sse(chunk(usage=USAGE_10_5)) + DONE


@pytest.mark.parametrize("name", CODINGS)
def test_bh07_a_compressed_answer_is_billed_from_its_usage_and_relayed_readable(
    relay: Relay, name: str
) -> None:
    header, encode = CODINGS[name]
    coded = ("Content-Encoding", header)
    for recording, send in (
        (whole(encode(ANSWER), JSON, coded), read_chat()),
        (streamed(chunked(encode(STREAM), 20), SSE, coded), read_chat(stream=True)),
    ):
        m = relay.metered(recording, send)
        assert m.answer == "Hello there friend"
        assert (m.row["status"], m.row["usage_source"]) == ("ok", "upstream")
        assert m.cost == m.debit == cost(10, 5) == 60_000
    assert relay.mock.requests()[-1]["headers"]["accept-encoding"] == "identity"


def test_bh07_the_client_gets_the_content_without_the_upstreams_coding(relay: Relay) -> None:
    m = relay.metered(whole(gzip.compress(ANSWER), JSON, ("Content-Encoding", "gzip")), raw_chat())
    assert isinstance(m.answer, Raw)
    assert "content-encoding" not in m.answer.headers
    assert m.answer.body == ANSWER
    coded = streamed(chunked(brotli.compress(STREAM), 7), SSE, ("Content-Encoding", "br"))
    m = relay.metered(coded, raw_chat(stream=True, stream_options={"include_usage": True}))
    assert "content-encoding" not in m.answer.headers
    assert m.answer.body == STREAM


def test_a_coding_the_gateway_cannot_read_is_a_502_billed_nothing(relay: Relay) -> None:
    m = relay.metered(
        whole(b"\x1f\x9d\x90...", JSON, ("Content-Encoding", "compress")), read_chat()
    )
    assert m.error is not None
    assert m.error.status_code == 502
    assert m.error.body["code"] == "upstream_encoding"
    assert "compress" in m.error.body["message"]
    assert (m.row["status"], m.debit) == ("upstream_error", 0)


# -- BH-08: a stream labelled as something else ----------------------------------------------

EVENTS = (
    sse(chunk("Paris is the capital of France. " * 5)),
    sse(chunk(finish="stop")),
    sse(chunk(usage={"prompt_tokens": 9, "completion_tokens": 40, "total_tokens": 49})),
    DONE,
)


@pytest.mark.parametrize(
    "label", ["text/plain; charset=utf-8", "application/json", "application/octet-stream"]
)
def test_bh08_a_stream_is_known_by_its_content_not_its_label(relay: Relay, label: str) -> None:
    send = raw_chat(stream=True, stream_options={"include_usage": True})
    m = relay.metered(streamed(EVENTS, ("Content-Type", label)), send)
    assert m.answer.body == b"".join(EVENTS)
    assert m.answer.headers["content-type"] == "text/event-stream"
    assert (m.row["status"], m.row["usage_source"]) == ("ok", "upstream")
    assert m.cost == m.debit == cost(9, 40) == 409_000


def test_bh08_a_mislabelled_stream_reads_in_the_sdk(relay: Relay) -> None:
    m = relay.metered(
        streamed(EVENTS, ("Content-Type", "application/json")), read_chat(stream=True)
    )
    assert m.answer == "Paris is the capital of France. " * 5
    assert m.debit == 409_000


def test_a_whole_answer_streamed_although_not_asked_is_billed_from_its_usage(
    relay: Relay,
) -> None:
    m = relay.metered(streamed(EVENTS, ("Content-Type", "text/plain")), raw_chat())
    assert m.answer.body == b"".join(EVENTS)
    assert m.answer.headers["content-type"] == "text/event-stream"
    assert (m.row["status"], m.row["usage_source"]) == ("ok", "upstream")
    assert m.debit == 409_000


# -- BH-19: streams that end without the exact "data: [DONE]\n\n" ----------------------------

CONTENT = sse(chunk("abc", "stop"))
USAGE_7_3 = sse(chunk(usage={"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}))
# What the upstream sends, and what the client receives: a last event the stream ends on
# without its blank line gets one, so that a client following the grammar dispatches it.
ENDS = {
    "a: usage, no [DONE]": (CONTENT + USAGE_7_3, b""),
    "b: [DONE] without its blank line": (CONTENT + USAGE_7_3 + b"data: [DONE]", b"\n\n"),
    "[DONE] without the space, one line ending": (
        CONTENT + USAGE_7_3 + b"data:[DONE]\n",
        b"\n",
    ),
    "CRLF line endings": (
        (CONTENT + USAGE_7_3 + b"data: [DONE]").replace(b"\n", b"\r\n"),
        b"\n\n",
    ),
    "CR line endings": ((CONTENT + USAGE_7_3 + DONE).replace(b"\n", b"\r"), b""),
    "keep-alives and split reads": (b": ping\n\n" + CONTENT + b":\n\n" + USAGE_7_3 + DONE, b""),
}


@pytest.mark.parametrize("name", ENDS)
def test_bh19_a_stream_that_ended_is_ok_and_billed_from_its_usage(relay: Relay, name: str) -> None:
    send = raw_chat(stream=True, stream_options={"include_usage": True})
    sent, added = ENDS[name]
    m = relay.metered(streamed(chunked(sent, 5), SSE), send)
    assert m.answer.body == sent + added
    assert (m.row["status"], m.row["usage_source"]) == ("ok", "upstream")
    assert m.cost == m.debit == cost(7, 3) == 37_000


def test_bh19_a_responses_stream_ending_incomplete_is_ok(relay: Relay) -> None:
    events = (
        typed("response.created", {"response": {"id": "r", "status": "in_progress"}}),
        typed("response.output_text.delta", {"delta": "A partial answer"}),
        typed(
            "response.incomplete",
            {
                "response": {
                    "id": "r",
                    "status": "incomplete",
                    "incomplete_details": {"reason": "max_output_tokens"},
                    "usage": {"input_tokens": 11, "output_tokens": 16, "total_tokens": 27},
                }
            },
        ),
    )
    for ending in (b"", b"\n\n"):  # with and without the last blank line
        body = b"".join(events).removesuffix(b"\n\n") + ending
        m = relay.metered(streamed(chunked(body, 64), SSE), raw_responses(max_output_tokens=16))
        assert m.answer.body == body.removesuffix(b"\n\n") + b"\n\n"
        assert m.row["status"] == "ok"
        assert m.cost == m.debit == cost(11, 16) == 171_000


def test_a_stream_ending_on_a_finish_without_usage_is_ok_and_counted(relay: Relay) -> None:
    m = relay.metered(
        streamed((sse(chunk("Hello")), sse(chunk(" world", "stop"))), SSE), raw_chat(stream=True)
    )
    assert (m.row["status"], m.row["usage_source"]) == ("ok", "counted")
    assert m.row["completion_tokens"] > 0
    assert m.debit == m.cost == cost(m.row["prompt_tokens"], m.row["completion_tokens"])


@pytest.mark.parametrize("cut", [False, True], ids=["closed", "connection-dropped"])
def test_a_stream_stopping_mid_answer_is_cut(relay: Relay, cut: bool) -> None:
    pieces = (sse(chunk("Hello")), sse(chunk(" wor")), b'data: {"choices":[{"ind')
    m = relay.metered(streamed(pieces, SSE, cut=cut), raw_chat(stream=True))
    # The whole events as they came; the cut one (a client would discard it) replaced by an
    # error the openai SDK raises on, then [DONE].
    assert m.answer.body.startswith(b"".join(pieces[:2]))
    error = m.answer.body[len(b"".join(pieces[:2])) :]
    assert error.endswith(b"\n\ndata: [DONE]\n\n")
    assert orjson.loads(error.split(b"\n\n")[0].removeprefix(b"data: "))["error"]["code"] == (
        "upstream_cut"
    )
    assert (m.row["status"], m.row["usage_source"]) == ("upstream_cut", "counted")
    assert m.row["completion_tokens"] > 0
    assert m.debit == m.cost > 0
