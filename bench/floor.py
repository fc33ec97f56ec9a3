"""The floor of the stack: the least any proxy on uvicorn + aiohttp can cost per call.

A bare ASGI callable (no framework, no routing, no middleware) on uvicorn with uvloop and
httptools, one shared aiohttp session with a keep-alive pool. Each call's request JSON is
parsed once and re-encoded (what any proxy that rewrites the model name must do), posted
upstream, and the answer's bytes are relayed. No auth, no metering, no logging. The gateway's
numbers in bench/run.py are reported as ratios against this process, measured in the same run.

    FLOOR_UPSTREAM=http://127.0.0.1:9000/v1/chat/completions python bench/floor.py PORT

``FLOOR_ROUTES`` (JSON object model -> upstream URL) picks the upstream by the body's model
(bench/run.py points the stream models at nginx's stream locations); without a match the
call goes to ``FLOOR_UPSTREAM``. The model is replaced by ``FLOOR_MODEL`` when set.
"""

from __future__ import annotations

import json
import os
import sys

import aiohttp
import uvicorn

ROUTES: dict[str, str] = json.loads(os.environ.get("FLOOR_ROUTES", "{}"))
DEFAULT = os.environ.get("FLOOR_UPSTREAM") or next(iter(ROUTES.values()), "")
MODEL = os.environ.get("FLOOR_MODEL", "")
HEADERS = {"Content-Type": "application/json"}
_session: aiohttp.ClientSession | None = None


def session() -> aiohttp.ClientSession:
    global _session
    if _session is None:
        _session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30),
            timeout=aiohttp.ClientTimeout(total=None, sock_read=600),
            auto_decompress=False,
            skip_auto_headers=("User-Agent",),
        )
    return _session


async def app(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    payload = json.loads(b"".join(chunks))
    url = ROUTES.get(payload.get("model"), DEFAULT)
    if MODEL:
        payload["model"] = MODEL
    body = json.dumps(payload, separators=(",", ":")).encode()
    async with session().post(url, data=body, headers=HEADERS) as resp:
        ctype = resp.headers.get("Content-Type", "application/json").encode()
        if ctype.startswith(b"text/event-stream"):
            await send(
                {
                    "type": "http.response.start",
                    "status": resp.status,
                    "headers": [(b"content-type", ctype)],
                }
            )
            async for data in resp.content.iter_any():
                await send({"type": "http.response.body", "body": data, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            return
        data = await resp.read()
    await send(
        {
            "type": "http.response.start",
            "status": resp.status,
            "headers": [(b"content-type", ctype), (b"content-length", str(len(data)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": data})


if __name__ == "__main__":
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        lifespan="off",
    )
