"""Judging an upstream answer by its bytes: stream or JSON, error objects, error bodies."""

from __future__ import annotations

import orjson
import pytest

from gateway.proxy.content import (
    describe,
    error_object,
    failure,
    kind_of,
    not_an_answer,
    upstream_error_body,
)

STREAMS = [
    b"data: {}\n\n",
    b"data:{}\n\n",
    b": keep-alive\n\ndata: {}\n\n",
    b"\r\n\r\nevent: message\ndata: {}\n\n",
    b"\xef\xbb\xbfdata: {}\n\n",
    b"id: 1\ndata: {}\n\n",
    b"retry: 100\n\n",
    b"data\n\n",
]
NOT_STREAMS = {
    b'{"error": {"message": "x"}}': "json",
    b'  \n[{"a": 1}]': "json",
    b"<!DOCTYPE html><html><title>502</title></html>": "other",
    b"Internal Server Error": "other",
    b"database: down\n": "other",
    b"": "other",
}


@pytest.mark.parametrize("head", STREAMS)
def test_an_event_stream_is_known_by_its_first_bytes_at_any_length(head: bytes) -> None:
    assert kind_of(head, at_end=True) == "sse"
    for n in range(len(head)):
        assert kind_of(head[:n], at_end=False) in (None, "sse")


@pytest.mark.parametrize(("body", "kind"), NOT_STREAMS.items())
def test_json_and_anything_else_are_told_from_a_stream(body: bytes, kind: str) -> None:
    assert kind_of(body, at_end=True) == kind
    for n in range(len(body)):
        assert kind_of(body[:n], at_end=False) in (None, kind)


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ({"error": {"message": "quota exceeded", "type": "insufficient_quota"}}, "quota exceeded"),
        ({"error": {"code": 502, "message": "Provider disconnected"}, "choices": []}, "Provider"),
        ({"error": "rate limited"}, "rate limited"),
        ({"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}, "busy"),
        ({"type": "error", "code": "server_error", "message": "boom"}, "boom"),
        ({"type": "response.failed", "response": {"error": {"message": "failed"}}}, "failed"),
    ],
)
def test_error_objects_in_place_of_an_answer(obj: dict[str, object], message: str) -> None:
    found = error_object(obj)
    assert found is not None
    assert message in str(found["message"])


@pytest.mark.parametrize(
    "obj",
    [
        {"id": "c", "choices": [{"index": 0, "message": {"content": "ok"}}], "error": None},
        {"type": "response.completed", "response": {"error": None}},
        {"object": "response", "status": "completed", "error": None},
        {"error": ""},
        ["error"],
        None,
    ],
)
def test_answers_are_not_errors(obj: object) -> None:
    assert error_object(obj) is None


def shape(body: bytes) -> dict[str, object]:
    error = orjson.loads(body)["error"]
    assert set(error) == {"message", "type", "code", "param"}
    return dict(error)


def test_an_error_inside_a_200_becomes_a_502_or_the_status_it_names() -> None:
    status, body = failure({"message": "quota exceeded", "code": "insufficient_quota"}, 200)
    assert status == 502
    assert shape(body) == {
        "message": "quota exceeded",
        "type": "upstream_error",
        "code": "insufficient_quota",
        "param": None,
    }
    status, body = failure({"code": 429, "message": "slow down", "type": "rate_limit"}, 200)
    assert (status, shape(body)["type"]) == (429, "rate_limit")


def test_an_openai_error_body_passes_unchanged() -> None:
    body = b'{"error":{"message":"bad","type":"invalid_request_error","code":null,"param":"n"}}'
    assert upstream_error_body(400, "application/json", body) is body


def test_a_cdn_page_is_described_by_its_title() -> None:
    page = (
        b"<!DOCTYPE html><html><head><title>api.example.com | 502: Bad gateway</title>"
        b"<style>body{color:red}</style></head><body><h1>Bad gateway</h1></body></html>"
    )
    error = shape(upstream_error_body(502, "text/html; charset=UTF-8", page))
    assert error["message"] == (
        'the upstream answered HTTP 502 with an HTML page: "api.example.com | 502: Bad gateway"'
    )
    assert (error["type"], error["code"]) == ("upstream_error", "upstream_error")
    portal = shape(not_an_answer(200, "text/html", page))
    assert "HTTP 200 with an HTML page" in str(portal["message"])
    assert portal["code"] == "bad_upstream_answer"


@pytest.mark.parametrize(
    ("content_type", "body", "said"),
    [
        ("text/plain", b"upstream connect error or disconnect/reset before headers", "text/plain"),
        ("application/json", b'{"detail": "Not Found"}', 'JSON without an error object: "Not'),
        ("", b"", "an empty body"),
        ("text/html", b"<html><body><p>Service &amp; more\x00unavailable</p></body></html>", "&"),
    ],
)
def test_what_came_back_is_said(content_type: str, body: bytes, said: str) -> None:
    assert said in describe(content_type, body, orjson.loads(body) if body[:1] == b"{" else None)


def test_an_excerpt_never_carries_a_key_nor_runs_long() -> None:
    key = "sk-proj-Abc123def456ghi789jkl012mno345"
    for leak in (key, "sk-proj-********************o345", f"Bearer {key[8:]}"):
        text = describe("text/plain", f"Incorrect API key provided: {leak}. Check it.".encode())
        assert leak not in text
        assert "[redacted]" in text
        assert "Incorrect API key provided" in text
    long = describe("text/plain", b"word " * 500)
    assert len(long) < 260
