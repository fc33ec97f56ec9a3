"""Writing the mock upstream's event streams: one event's bytes, and a scripted stream sent
with its faults (``cut_after``, ``chunk_delay``) applied."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web

from gateway.mock.script import LOG_ENTRY, SSE_HEADERS, ScriptedReply


def sse(obj: Any, event: str | None = None) -> bytes:
    data = b"data: " + orjson.dumps(obj) + b"\n\n"
    return b"event: " + event.encode() + b"\n" + data if event else data


async def stream(
    request: web.Request,
    reply: ScriptedReply,
    head: list[bytes],
    body: list[bytes],
    tail: list[bytes],
) -> web.StreamResponse:
    """Send head events, one event per reply piece (honouring faults), then tail events."""
    resp = web.StreamResponse(headers=SSE_HEADERS)
    await resp.prepare(request)
    await resp.write(b"".join(head))
    for sent, event in enumerate(body[: reply.mock.cut_after]):
        if reply.mock.chunk_delay > 0:
            await asyncio.sleep(reply.mock.chunk_delay)
        try:
            await resp.write(event)
        except ConnectionError:
            # The client closed the stream early: the log says so, and how much it was sent.
            # A normal end, not an error: returning (not raising) keeps aiohttp from logging a
            # traceback; its write_eof on the closed transport fails quietly.
            LOG_ENTRY.get()["closed_after"] = sent
            return resp
    if reply.mock.cut_after is not None:
        # The final zero-length chunk is never sent, so clients see a truncated body (and, as
        # above, returning keeps the dropped connection out of aiohttp's error log).
        if request.transport is not None:
            request.transport.abort()
        return resp
    await resp.write(b"".join(tail))
    await resp.write_eof()
    return resp
