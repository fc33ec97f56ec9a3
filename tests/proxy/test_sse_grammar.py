"""The stream relay reads the HTML event-stream grammar, whatever the reads' boundaries.

Every case is fed split at every byte (two reads), one byte per read, and at random cuts
(hypothesis); each time the relay must forward the same bytes, in pieces of whole events
(``sse.payloads`` of each piece gives exactly the events the grammar dispatches), and find
the same usage, end and error. What the grammar dispatches comes from ``reference``, a line by
line transcription of html.spec.whatwg.org "Parsing an event stream" (with the relay's one
leniency: an event the stream ends on without its blank line is read).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.endpoints import CHAT_USAGE, RESPONSE_USAGE, UsageShape
from gateway.proxy import sse as sse_module
from gateway.proxy.sse import StreamMeter, payloads


def reference(stream: bytes, *, lenient: bool = True) -> list[str]:
    """The data of every event the grammar dispatches, in order (``[DONE]`` included);
    ``lenient``: the end of the stream also ends its last event (as the meter reads it; a
    client following the grammar to the letter discards it)."""
    text = stream.decode("utf-8")
    text = text.removeprefix("\ufeff")
    lines = re.split(r"\r\n|\r|\n", text)
    if lines[-1] == "":
        lines.pop()  # the text ended with a line ending
    events, data = [], ""
    if not lenient and not text.endswith(("\n", "\r")):
        lines.pop()  # a line the stream ends inside is discarded, and its event with it
    for line in [*lines, ""] if lenient else lines:  # the leniency: the end ends the event
        if line == "":
            if data:  # dispatch; an empty buffer dispatches nothing
                events.append(data.removesuffix("\n"))
            data = ""
        elif line.startswith(":"):
            continue  # a comment
        else:
            field, colon, value = line.partition(":")
            if colon and value.startswith(" "):
                value = value[1:]
            if field == "data":
                data += value + "\n"
    return events


def ev(obj: Any, end: str = "\n\n", space: bool = True) -> str:
    return "data:" + (" " if space else "") + json.dumps(obj) + end


def content(text: str, finish: str | None = None) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}]}


USAGE = {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 3}}
RESPONSE_END = {
    "type": "response.incomplete",
    "response": {
        "status": "incomplete",
        "incomplete_details": {"reason": "max_output_tokens"},
        "usage": {"input_tokens": 11, "output_tokens": 16, "total_tokens": 27},
    },
}


@dataclass(frozen=True)
class Case:
    name: str
    data: bytes
    usage: tuple[int, int] | None
    finished: bool
    error: bool = False
    shape: UsageShape = CHAT_USAGE


def chat(end: str, *, space: bool = True, done: str | None = None) -> bytes:
    done = "data: [DONE]" + end if done is None else done
    body = ev(content("Hel", None), end, space) + ev(content("lo", "stop"), end, space)
    return (body + ev(USAGE, end, space) + done).encode()


CASES = [
    Case("lf", chat("\n\n"), (7, 3), True),
    Case("crlf", chat("\r\n\r\n"), (7, 3), True),
    Case("lone-cr", chat("\r\r"), (7, 3), True),
    Case("cr-then-crlf", chat("\r\r\n"), (7, 3), True),
    Case("lf-then-crlf", chat("\n\r\n"), (7, 3), True),
    Case("crlf-then-lf", chat("\r\n\n"), (7, 3), True),
    Case("blank-line-runs", chat("\n\n\n\n"), (7, 3), True),
    Case("no-space-after-colon", chat("\n\n", space=False, done="data:[DONE]\n\n"), (7, 3), True),
    Case(
        "comments-and-other-fields",
        (
            ": keep-alive\n\n:\r\n\r\nretry: 3000\nid: 7\n\n"
            + "event: delta\n: a comment inside\n"
            + ev(content("Hi", "stop"))
            + "id: 8\r\n"
            + ev(USAGE, "\r\n\r\n")
            + ": ping\n\ndata: [DONE]\n\n: trailing keep-alive\n\n"
        ).encode(),
        (7, 3),
        True,
    ),
    Case(
        "multi-line-data",
        (
            b'data: {"choices": [{"index": 0,\ndata: "delta": {"content": "a\\nb"}}]}\n\n'
            b'data: {"choices": [], "usage":\ndata:  {"prompt_tokens": 7,\r\n'
            b'data: "completion_tokens": 3}}\r\n\r\ndata\ndata: [DONE]\n\n'
        ),
        (7, 3),
        False,  # "data\ndata: [DONE]" is the data "\n[DONE]", not the sentinel; no finish
    ),
    Case("bom", b"\xef\xbb\xbf" + chat("\n\n"), (7, 3), True),
    Case("done-without-blank-line", chat("\n\n", done="data: [DONE]"), (7, 3), True),
    Case("done-with-one-line-ending", chat("\r\n\r\n", done="data: [DONE]\r\n"), (7, 3), True),
    Case("usage-chunk-last-without-blank-line", chat("\n\n", done="")[:-2], (7, 3), True),
    Case("no-done-after-usage", chat("\n\n", done=""), (7, 3), True),
    Case(
        "finish-without-usage-or-done",
        (ev(content("Hel")) + ev(content("lo", "stop"))).encode(),
        None,
        True,
    ),
    Case("cut-mid-answer", (ev(content("Hel")) + ev(content("lo"))).encode(), None, False),
    Case(
        "done-as-text-is-no-end",
        (ev(content("[DONE]")) + ev(content(" data: [DONE]"))).encode(),
        None,
        False,
    ),
    Case(
        "usage-then-more-content",
        (ev(content("a", "stop")) + ev({**content("b"), "usage": USAGE["usage"]})).encode(),
        (7, 3),
        False,
    ),
    Case(
        "in-band-error-after-text",
        (
            ev(content("The answer begins"))
            + ev(
                {"error": {"code": 502, "message": "Provider disconnected"}, **content("", "error")}
            )
            + "data: [DONE]\n\n"
        ).encode(),
        None,
        True,
        error=True,
    ),
    Case(
        "responses-incomplete-without-blank-line",
        (
            'event: response.created\ndata: {"type":"response.created","response":{}}\n\n'
            "event: response.output_text.delta\r\n"
            'data: {"type":"response.output_text.delta","delta":"A partial answer"}\r\n\r\n'
            "event: response.incomplete\ndata: " + json.dumps(RESPONSE_END)
        ).encode(),
        (11, 16),
        True,
        shape=RESPONSE_USAGE,
    ),
    Case(
        "responses-failed",
        (
            b'data: {"type":"response.created","response":{}}\r\r'
            b'data: {"type":"response.failed","response":{"status":"failed",'
            b'"error":{"code":"server_error","message":"boom"}}}\r\r'
        ),
        None,
        True,
        error=True,
        shape=RESPONSE_USAGE,
    ),
    Case(
        "responses-cut",
        b'data: {"type":"response.output_text.delta","delta":"A"}\n\n',
        None,
        False,
        shape=RESPONSE_USAGE,
    ),
]


def relay(case: Case, reads: list[bytes]) -> tuple[list[bytes], StreamMeter]:
    meter = StreamMeter(case.shape, hide_usage_chunk=False)
    pieces = [meter.feed(r) for r in reads]
    pieces.append(meter.close())
    return [p for p in pieces if p], meter


def check(case: Case, reads: list[bytes]) -> None:
    pieces, meter = relay(case, reads)
    out = b"".join(pieces)
    if case.finished:
        # The last event, read although the stream ended inside it, gets its blank line: a
        # client following the grammar to the letter dispatches every event the meter read.
        assert out.startswith(case.data)
        assert out.removeprefix(case.data) in (b"", b"\n", b"\r", b"\n\n")
        assert reference(out, lenient=False) == reference(case.data)
    else:
        assert out == case.data
    dispatched = [d.encode() for d in reference(case.data)]
    # Each forwarded piece holds whole events: their data, piece by piece, is the grammar's.
    assert [d for p in pieces for d in payloads(p)] == [
        d for d in dispatched if d and d != b"[DONE]"
    ]
    usage = meter.usage
    assert (usage and (usage.prompt_tokens, usage.output_tokens)) == case.usage
    assert meter.finished is case.finished
    assert (meter.error is not None) is case.error


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_every_split_point_gives_the_same_relay(case: Case) -> None:
    data = case.data
    for cut in range(len(data) + 1):
        check(case, [data[:cut], data[cut:]])


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_one_byte_per_read_gives_the_same_relay(case: Case) -> None:
    check(case, [case.data[i : i + 1] for i in range(len(case.data))])


@given(st.sampled_from(CASES), st.lists(st.integers(0, 2000), max_size=40))
def test_any_chunking_gives_the_same_relay(case: Case, cuts: list[int]) -> None:
    data = case.data
    points = sorted({c % (len(data) + 1) for c in cuts})
    check(case, [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)])


def test_the_reference_reads_what_the_cases_say() -> None:
    # The reference itself, on the grammar's own examples (html.spec.whatwg.org §9.2.6).
    assert reference(b"data: YHOO\ndata: +2\ndata: 10\n\n") == ["YHOO\n+2\n10"]
    assert reference(b": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\n") == [
        "first event",
        "second event",
    ]
    assert reference(b"data\n\ndata\ndata\n\ndata:\n") == ["", "\n", ""]
    assert reference(b"data:test\n\ndata: test\n\n") == ["test", "test"]


@pytest.mark.parametrize("end", ["\n\n", "\r\n\r\n", "\r\r", "\r\r\n", "\n\r\n", "\r\n\n"])
def test_the_hidden_usage_chunk_is_dropped_at_every_split(end: str) -> None:
    data = chat(end)
    usage_event = ev(USAGE, end).encode()
    for cut in range(len(data) + 1):
        meter = StreamMeter(CHAT_USAGE, hide_usage_chunk=True)
        out = meter.feed(data[:cut]) + meter.feed(data[cut:]) + meter.close()
        assert out == data.replace(usage_event, b"")
        assert meter.usage is not None
        assert meter.finished


def test_only_events_that_can_carry_usage_or_an_error_are_parsed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parsed: list[bytes] = []
    real = sse_module._load
    monkeypatch.setattr(sse_module, "_load", lambda data: parsed.append(data) or real(data))
    quiet = [
        b'{"choices":[{"delta":{"content":"say \\"error\\": {} \\"type\\":\\"error\\""}}]}',
        b'{"type":"response.output_text.delta","delta":"x","error":null,"usage":null}',
        b'{"type":"response.created","response":{"status":"in_progress","error":null}}',
    ]
    loud = [
        b'{"error":{"message":"quota exceeded"}}',
        b'{"type":"error","code":"server_error","message":"boom"}',
        b'{"type":"response.completed","response":{"status":"completed"}}',
    ]
    meter = StreamMeter(RESPONSE_USAGE, hide_usage_chunk=False)
    for data in quiet + loud:
        meter.feed(b"data: " + data + b"\n\n")
    assert parsed == loud
    assert meter.error == {"message": "quota exceeded"}
    assert meter.finished
