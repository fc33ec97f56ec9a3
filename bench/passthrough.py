"""A bare pass-through proxy on the gateway's stack, as the floor the gateway is compared with.

Same server and libraries as the gateway (uvicorn with uvloop + httptools, a Starlette router,
one shared aiohttp session with a keep-alive pool), none of the metering: no auth, no token
counting, no reservation, no settlement. POST /v1/chat/completions is forwarded to
``$PASSTHROUGH_UPSTREAM`` + the path suffix chosen by the request's ``model`` field
(``$PASSTHROUGH_ROUTES``: JSON object model -> upstream base URL), bytes passed through.

    PASSTHROUGH_ROUTES='{"bench": "http://127.0.0.1:9000/v1"}' python bench/passthrough.py PORT

DESIGN.md §5 quotes a bare starlette + aiohttp pass-through at ~6,300 calls/s at 8 concurrent;
run.py measures this one side by side on the same machine and load.
"""

from __future__ import annotations

import json
import os
import sys

import aiohttp
import uvicorn
from starlette.applications import Starlette
from starlette.routing import Route

ROUTES: dict[str, str] = json.loads(os.environ.get("PASSTHROUGH_ROUTES", "{}"))
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


class Forward:
    async def __call__(self, scope, receive, send) -> None:
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        # The one JSON parse a real proxy cannot avoid: which model, which upstream.
        model = json.loads(body).get("model")
        base = ROUTES.get(model) or next(iter(ROUTES.values()))
        async with session().post(
            base + "/chat/completions", data=body, headers={"Content-Type": "application/json"}
        ) as resp:
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
                    "headers": [
                        (b"content-type", ctype),
                        (b"content-length", str(len(data)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": data})


app = Starlette(routes=[Route("/v1/chat/completions", Forward(), methods=["POST"])])

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
