"""Upstream failures as they really come (issue 11 A; cases BH-09 and BH-10 of
/work/shared/cases): an error object inside a 200, as the whole body or as a stream event, and
error pages that are not JSON. The caller always gets OpenAI's error shape with the upstream's
status (502 for a 200 that held no answer); nothing is billed unless text was produced.
Each answer is a recording the mock upstream replays over a real socket; the client is the
openai SDK.
"""

from __future__ import annotations

import gzip
import json

import pytest

from tests.support.replayed import (  # noqa: F401  (relay_fixture: the `relay` fixture)
    JSON,
    SSE,
    Metered,
    Relay,
    raw_chat,
    raw_responses,
    read_chat,
    relay_fixture,
    streamed,
    whole,
)
from tests.support.scripted import DONE, chunk, cost, sse, typed

QUOTA = {
    "error": {
        "message": "quota exceeded",
        "type": "insufficient_quota",
        "code": "insufficient_quota",
    }
}
MID_STREAM = {
    "id": "gen-1",
    "object": "chat.completion.chunk",
    "error": {"code": 502, "message": "Provider disconnected"},
    "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}],
}
HTML = (
    b"<!DOCTYPE html><html><head><title>api.example.com | 502: Bad gateway</title></head>"
    b"<body><h1>Bad gateway</h1><span>Error code 502</span></body></html>"
)
PAGE = ("Content-Type", "text/html; charset=UTF-8")


def openai_error(m: Metered, status: int) -> dict[str, object]:
    """The error the SDK raised: its status and OpenAI's four fields."""
    assert m.error is not None, m.answer
    assert m.error.status_code == status
    body = json.loads(m.error.response.content)
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "code", "param"}
    return dict(body["error"])


def billed_nothing(m: Metered) -> None:
    assert (m.row["status"], m.row["cost"], m.debit) == ("upstream_error", "0.00", 0)


# -- BH-09: an error inside a 200 ------------------------------------------------------------


def test_bh09a_a_stream_holding_only_an_error_bills_nothing(relay: Relay) -> None:
    events = (sse(QUOTA), DONE)
    m = relay.metered(streamed(events, SSE), raw_chat(stream=True))
    assert m.answer.body == b"".join(events)  # the stream had begun: the event is relayed
    billed_nothing(m)


def test_bh09b_an_error_object_as_the_whole_body_is_an_upstream_error(relay: Relay) -> None:
    m = relay.metered(whole(json.dumps(QUOTA).encode(), JSON), read_chat())
    error = openai_error(m, 502)
    assert (error["message"], error["code"]) == ("quota exceeded", "insufficient_quota")
    billed_nothing(m)


def test_bh09c_an_error_after_produced_text_is_a_cut_billed_for_what_came(relay: Relay) -> None:
    events = (sse(chunk("The answer begins here and")), sse(MID_STREAM), DONE)
    m = relay.metered(streamed(events, SSE), raw_chat(stream=True))
    assert m.answer.body == b"".join(events)
    assert (m.row["status"], m.row["usage_source"]) == ("upstream_cut", "counted")
    assert m.row["completion_tokens"] > 0
    assert m.debit == m.cost == cost(m.row["prompt_tokens"], m.row["completion_tokens"]) > 0


@pytest.mark.parametrize(
    "event",
    [
        {"error": "rate limited"},
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
        {"error": {"message": "no"}, "usage": {"prompt_tokens": 9, "completion_tokens": 0}},
    ],
    ids=["error-message", "anthropic-error-event", "error-with-usage"],
)
def test_an_error_event_before_any_text_bills_nothing(relay: Relay, event: object) -> None:
    events = (sse(chunk("")), sse(event), DONE)
    m = relay.metered(streamed(events, SSE), raw_chat(stream=True))
    assert m.answer.body == b"".join(events)
    billed_nothing(m)


def test_a_failed_responses_stream_bills_nothing(relay: Relay) -> None:
    failed = {"response": {"status": "failed", "error": {"code": "server_error", "message": "x"}}}
    events = (typed("response.created", {"response": {}}), typed("response.failed", failed))
    billed_nothing(relay.metered(streamed(events, SSE), raw_responses()))


def test_an_error_body_naming_an_http_status_keeps_it(relay: Relay) -> None:
    body = {"error": {"code": 429, "message": "Rate limit exceeded: free-models-per-day"}}
    m = relay.metered(whole(json.dumps(body).encode(), JSON), read_chat())
    assert openai_error(m, 429)["message"] == "Rate limit exceeded: free-models-per-day"
    billed_nothing(m)


def test_an_error_object_labelled_as_a_stream_is_an_error(relay: Relay) -> None:
    m = relay.metered(whole(json.dumps(QUOTA).encode(), SSE), read_chat(stream=True))
    assert openai_error(m, 502)["message"] == "quota exceeded"
    billed_nothing(m)


# -- BH-10: answers that are not JSON ---------------------------------------------------------


def test_bh10a_a_cdn_error_page_keeps_its_status_in_openai_shape(relay: Relay) -> None:
    m = relay.metered(whole(HTML, PAGE, status=502), read_chat())
    error = openai_error(m, 502)
    assert "502: Bad gateway" in str(error["message"])
    assert "HTML page" in str(error["message"])
    billed_nothing(m)


def test_bh10b_a_200_html_page_is_a_502_billed_nothing(relay: Relay) -> None:
    for send in (read_chat(), read_chat(stream=True)):
        m = relay.metered(whole(HTML, PAGE), send)
        error = openai_error(m, 502)
        assert "HTTP 200 with an HTML page" in str(error["message"])
        billed_nothing(m)


@pytest.mark.parametrize(
    ("status", "headers", "body", "said"),
    [
        (503, [("Content-Type", "text/plain")], b"upstream connect error or disconnect", "connect"),
        (404, [JSON], b'{"detail": "Not Found"}', '"Not Found"'),
        (500, [], b"", "an empty body"),
        (200, [("Content-Type", "text/plain")], b"OK", 'text/plain: "OK"'),
        (200, [JSON], b'{"id": "c", "choices": [{"message"', "application/json"),
    ],
    ids=["503-text", "404-json-detail", "500-empty", "200-text", "200-broken-json"],
)
def test_what_came_back_is_said_with_the_upstreams_status(
    relay: Relay, status: int, headers: list[tuple[str, str]], body: bytes, said: str
) -> None:
    m = relay.metered(whole(body, *headers, status=status), read_chat())
    error = openai_error(m, 502 if status < 400 else status)
    assert said in str(error["message"])
    billed_nothing(m)


def test_an_error_page_echoing_a_key_is_not_relayed_with_it(relay: Relay) -> None:
    key = "sk-proj-T3stKeyAbcdef0123456789XYZ"
    page = f"<html><body><h1>Invalid key {key}</h1></body></html>".encode()
    m = relay.metered(whole(page, PAGE, status=500), read_chat())
    message = str(openai_error(m, 500)["message"])
    assert key not in message
    assert key[:12] not in message
    assert "Invalid key [redacted]" in message


def test_a_compressed_error_page_is_read_for_what_it_says(relay: Relay) -> None:
    page = whole(gzip.compress(HTML), PAGE, ("Content-Encoding", "gzip"), status=503)
    error = openai_error(relay.metered(page, read_chat()), 503)
    assert "502: Bad gateway" in str(error["message"])
