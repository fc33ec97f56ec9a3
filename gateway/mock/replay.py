"""Recorded answers the mock upstream replays byte for byte, so any answer a real upstream (or a
CDN in front of one) has been seen to give can be a test through the real socket path.

A recording is a status, headers, and either a whole body (sent with Content-Length) or stream
chunks, each written on its own (chunked transfer), ``chunk_delay`` seconds apart so that each
tends to arrive as its own read (TCP may still merge writes that come close together), and how
the connection ends: normally, or ``cut`` (dropped after the last chunk, without the final
zero-length chunk, as a crashed upstream leaves it). Framing headers (Content-Length,
Transfer-Encoding) are the server's to write and are ignored in a recording; any other header,
Content-Encoding included, is sent as recorded, and the bytes are never re-encoded (a recording
without Content-Type gets aiohttp's default, ``application/octet-stream``).

Register one under a name, then select it with the directive ``[[mock:replay=NAME]]`` in the
prompt (or ``x-mock: replay=NAME``); the request is logged like any other and the other
directives (``delay``) still apply. In process: ``MockUpstreamThread.record(recording)``. Over
HTTP: ``PUT /_mock/recordings/NAME`` with the JSON form, ``GET /_mock/recordings`` lists the
names, ``DELETE /_mock/recordings`` forgets them all. The JSON form::

    {"status": 200,
     "headers": [["Content-Type", "text/event-stream"], ["Content-Encoding", "gzip"]],
     "chunks": ["data: {...}\\n\\n", {"base64": "H4sI..."}],   # or "body": "..." / {"base64": ...}
     "chunk_delay": 0.01,
     "end": "cut"}                                             # or "eof" (the default)

``headers`` may also be an object; text is sent as UTF-8, ``{"base64": ...}`` as its bytes.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web
from multidict import CIMultiDict

RECORDINGS_KEY = web.AppKey("mock_recordings", dict)
_FRAMING = frozenset(("content-length", "transfer-encoding"))


@dataclass(frozen=True, slots=True)
class Recording:
    """One answer to replay: ``body`` (whole) or ``chunks`` (streamed), see the module doc."""

    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None
    chunks: tuple[bytes, ...] = ()
    chunk_delay: float = 0.0
    cut: bool = False

    @classmethod
    def from_json(cls, obj: Any) -> Recording:
        """Reads the JSON form; ValueError says what is wrong with it."""
        if not isinstance(obj, dict):
            raise ValueError("a recording is a JSON object")
        unknown = set(obj) - {"status", "headers", "body", "chunks", "chunk_delay", "end"}
        if unknown:
            raise ValueError(f"unknown recording fields: {sorted(unknown)}")
        status = obj.get("status", 200)
        if type(status) is not int or not 100 <= status <= 599:
            raise ValueError("status must be an HTTP status code")
        headers = obj.get("headers", [])
        pairs = list(headers.items()) if isinstance(headers, dict) else headers
        if not isinstance(pairs, list) or not all(
            isinstance(p, (list, tuple)) and len(p) == 2 and all(isinstance(x, str) for x in p)
            for p in pairs
        ):
            raise ValueError("headers must be an object or a list of [name, value] pairs")
        if "body" in obj and "chunks" in obj:
            raise ValueError("a recording has a body or chunks, not both")
        chunks = obj.get("chunks", [])
        if not isinstance(chunks, list):
            raise ValueError("chunks must be a list")
        delay = obj.get("chunk_delay", 0.0)
        if not isinstance(delay, (int, float)) or isinstance(delay, bool) or not 0 <= delay <= 60:
            raise ValueError("chunk_delay must be a number of seconds from 0 to 60")
        end = obj.get("end", "eof")
        if end not in ("eof", "cut"):
            raise ValueError('end must be "eof" or "cut"')
        return cls(
            status=status,
            headers=tuple((name, value) for name, value in pairs),
            body=_bytes(obj["body"]) if "body" in obj else None,
            chunks=tuple(_bytes(c) for c in chunks),
            chunk_delay=float(delay),
            cut=end == "cut",
        )


def _bytes(value: Any) -> bytes:
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, dict) and set(value) == {"base64"} and isinstance(value["base64"], str):
        try:
            return base64.b64decode(value["base64"], validate=True)
        except binascii.Error:
            raise ValueError("invalid base64 in a recording") from None
    raise ValueError('a body or chunk is a string or {"base64": "..."}')


async def replay(request: web.Request, recording: Recording) -> web.StreamResponse:
    """Sends ``recording`` as the answer to ``request``."""
    headers = CIMultiDict((k, v) for k, v in recording.headers if k.lower() not in _FRAMING)
    if recording.body is not None and not recording.cut:
        return web.Response(status=recording.status, body=recording.body, headers=headers)
    stream = web.StreamResponse(status=recording.status, headers=headers)
    await stream.prepare(request)
    pieces = recording.chunks if recording.body is None else (recording.body,)
    for i, chunk in enumerate(pieces):
        if i and recording.chunk_delay:
            await asyncio.sleep(recording.chunk_delay)
        try:
            await stream.write(chunk)
        except ConnectionError:
            return stream  # the client left: normal, so no traceback (aiohttp logs a raise)
    if recording.cut:
        if request.transport is not None:
            request.transport.abort()
        return stream  # returned, not raised: aiohttp would log a traceback for a raise
    await stream.write_eof()
    return stream


async def recordings(request: web.Request) -> web.StreamResponse:
    """PUT /_mock/recordings/{name}, GET and DELETE /_mock/recordings."""
    store: dict[str, Recording] = request.app[RECORDINGS_KEY]
    if request.method == "PUT":
        try:
            store[request.match_info["name"]] = Recording.from_json(
                orjson.loads(await request.read())
            )
        except (ValueError, orjson.JSONDecodeError) as exc:
            error = {"message": str(exc), "type": "invalid_request_error", "code": None}
            return web.json_response({"error": {**error, "param": None}}, status=400)
    elif request.method == "DELETE":
        store.clear()
    return web.json_response(sorted(store))
