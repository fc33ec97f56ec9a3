"""The mock upstream replays recorded answers byte for byte, over a real socket."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from gateway.mock.replay import Recording
from gateway.mock.runner import MockUpstreamThread


@pytest.fixture(scope="module")
def mock() -> Iterator[MockUpstreamThread]:
    with MockUpstreamThread() as server:
        yield server


def ask(mock: MockUpstreamThread, name: str, path: str = "/chat/completions") -> dict[str, Any]:
    """Posts a request selecting recording ``name``; the raw answer, HTTP chunks kept apart."""

    async def post() -> dict[str, Any]:
        directive = f"[[mock:replay={name}]]"  # read from messages (chat) or input (responses)
        payload = {"model": "m", "messages": [{"role": "user", "content": directive}]}
        payload["input"] = directive
        chunks: list[bytes] = []
        error: Exception | None = None
        async with (
            aiohttp.ClientSession(auto_decompress=False) as session,
            session.post(mock.base_url + path, json=payload) as response,
        ):
            try:
                piece = b""
                async for data, end_of_chunk in response.content.iter_chunks():
                    piece += data
                    if end_of_chunk:
                        chunks.append(piece)
                        piece = b""
            except aiohttp.ClientPayloadError as exc:
                error = exc
            if piece:  # a body with Content-Length has no HTTP chunks
                chunks.append(piece)
            return {
                "status": response.status,
                "headers": response.headers,
                "chunks": chunks,
                "error": error,
            }

    return asyncio.run(post())


def test_a_body_is_replayed_with_its_status_and_headers(mock: MockUpstreamThread) -> None:
    body = gzip.compress(b'{"id":"c"}')
    name = mock.record(
        Recording(
            status=203,
            headers=(("Content-Type", "application/json"), ("Content-Encoding", "gzip")),
            body=body,
        )
    )
    got = ask(mock, name)
    assert got["status"] == 203
    assert got["headers"]["Content-Encoding"] == "gzip"
    assert got["headers"]["Content-Length"] == str(len(body))
    assert b"".join(got["chunks"]) == body
    assert mock.requests()[-1]["path"] == "/v1/chat/completions"


def test_chunks_keep_their_boundaries_and_a_cut_drops_the_connection(
    mock: MockUpstreamThread,
) -> None:
    chunks = (b"data: {", b'"a": 1}\n', b"\n", b"data: [DONE]\r\n\r\n")
    stream = Recording(headers=(("Content-Type", "text/plain"),), chunks=chunks, chunk_delay=0.01)
    got = ask(mock, mock.record(stream), "/responses")
    assert got["status"] == 200
    assert got["headers"]["Content-Type"] == "text/plain"
    assert got["headers"]["Transfer-Encoding"] == "chunked"
    assert tuple(got["chunks"]) == chunks
    assert got["error"] is None

    cut = ask(mock, mock.record(Recording(chunks=chunks[:2], cut=True)))
    assert b"".join(cut["chunks"]) == b"".join(chunks[:2])
    assert isinstance(cut["error"], aiohttp.ClientPayloadError)


def put(mock: MockUpstreamThread, name: str, obj: Any) -> tuple[int, Any]:
    base = mock.base_url.removesuffix("/v1")
    request = urllib.request.Request(
        f"{base}/_mock/recordings/{name}", data=json.dumps(obj).encode(), method="PUT"
    )
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_recordings_can_be_registered_over_http(mock: MockUpstreamThread) -> None:
    coded = gzip.compress(b"data: [DONE]\n\n")
    status, names = put(
        mock,
        "over-http",
        {
            "status": 502,
            "headers": {"Content-Type": "text/html", "Content-Length": "1"},
            "chunks": ["<html>", {"base64": base64.b64encode(coded).decode()}],
            "end": "eof",
        },
    )
    assert status == 200
    assert "over-http" in names
    got = ask(mock, "over-http")
    assert got["status"] == 502
    assert got["headers"]["Content-Type"] == "text/html"
    assert "Content-Length" not in got["headers"]  # framing is the server's
    assert b"".join(got["chunks"]) == b"<html>" + coded


@pytest.mark.parametrize(
    ("obj", "said"),
    [
        ({"status": 99}, "status"),
        ({"body": "x", "chunks": []}, "not both"),
        ({"chunks": [{"base64": "%%%"}]}, "base64"),
        ({"chunks": [1]}, "string"),
        ({"end": "later"}, "end"),
        ({"headers": [["a"]]}, "headers"),
        ({"bogus": 1}, "unknown"),
    ],
)
def test_a_bad_recording_is_refused_with_the_reason(
    mock: MockUpstreamThread, obj: dict[str, Any], said: str
) -> None:
    status, body = put(mock, "bad", obj)
    assert status == 400
    assert said in body["error"]["message"]


def test_an_unknown_recording_is_a_400(mock: MockUpstreamThread) -> None:
    got = ask(mock, "never-recorded")
    assert got["status"] == 400
    assert b"never-recorded" in b"".join(got["chunks"])
