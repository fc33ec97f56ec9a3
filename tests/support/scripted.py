"""A scripted upstream for tests: an aiohttp server on a free port in its own thread, answering
each path with a handler the test sets (crafted bodies and streams, byte for byte), and a
models file whose models `m` and `emb` point at it at the prices of /work/shared/cases.

Handlers are ``async (request, json_body) -> web.StreamResponse``; ``raw`` and ``stream``
build the common ones from bodies made with ``completion``, ``chunk``, ``sse`` and ``typed``.
``Caller`` makes a metered call through the gateway and reads its usage row and debit.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import threading
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web

from tests.support.gateway import RunningGateway
from tests.support.waiting import wait_until

Handler = Callable[[web.Request, Any], Awaitable[web.StreamResponse]]
NANO = 1_000_000_000
# Model `m`: $1.00 in, $0.10 cached, $10.00 out per 1M tokens; `emb`: $0.10 in.
P_IN, P_CACHED, P_OUT, P_EMB = 1_000, 100, 10_000, 100  # nano-USD per token

MODELS = """\
currency: usd
providers:
  scripted: {{base_url: "{base_url}"}}
  xai: {{base_url: "{base_url}", dialect: xai}}
models:
  m:
    provider: scripted
    upstream_model: up-model
    price: {{input: "1.00", cached_input: "0.10", output: "10.00"}}
    max_output_tokens: 1000
  emb:
    provider: scripted
    kind: embedding
    upstream_model: up-emb
    price: {{input: "0.10"}}
  w:
    provider: scripted
    upstream_model: up-cache
    max_output_tokens: 1000
    price:
      input: "1.00"
      cached_input: "0.10"
      cache_write: "1.25"
      cache_write_1h: "2.00"
      output: "10.00"
      tiers:
        - above_input_tokens: 1000
          price: {{input: "2.00", cached_input: "0.20", cache_write: "2.50",
                  cache_write_1h: "4.00", output: "15.00"}}
  grok:
    provider: xai
    upstream_model: up-grok
    price: {{input: "1.00", output: "10.00"}}
    max_output_tokens: 1000
"""


def cost(prompt: int, output: int = 0, cached: int = 0, p_in: int = P_IN) -> int:
    """Nano-USD of a call of model `m` (or `emb` with ``p_in=P_EMB``); every price divides
    exactly, so no rounding is involved. Model `w` adds cache-write prices and a long-context
    tier above 1000 prompt tokens; model `grok` is served by a provider with ``dialect: xai``."""
    return (prompt - cached) * p_in + cached * P_CACHED + output * P_OUT


def sse(obj: Any) -> bytes:
    return b"data: " + (obj if isinstance(obj, bytes) else json.dumps(obj).encode()) + b"\n\n"


def typed(kind: str, obj: dict[str, Any]) -> bytes:
    """A Responses API stream event."""
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **obj})}\n\n".encode()


DONE = b"data: [DONE]\n\n"


def raw(body: Any, status: int = 200) -> Handler:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()

    async def handler(request: web.Request, _: Any) -> web.StreamResponse:
        return web.Response(body=data, status=status, content_type="application/json")

    return handler


async def send_stream(request: web.Request, pieces: Sequence[bytes]) -> web.StreamResponse:
    """Writes each piece as its own write: the exact bytes reach the gateway."""
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    for piece in pieces:
        await resp.write(piece)
    await resp.write_eof()
    return resp


def stream(pieces: Sequence[bytes]) -> Handler:
    async def handler(request: web.Request, _: Any) -> web.StreamResponse:
        return await send_stream(request, pieces)

    return handler


def chat(content: str, **fields: Any) -> dict[str, Any]:
    return {"model": "m", **fields, "messages": [{"role": "user", "content": content}]}


def chunk(
    content: str | None = None,
    finish: str | None = None,
    usage: dict[str, Any] | None = None,
    index: int = 0,
) -> dict[str, Any]:
    choices = []
    if content is not None or finish is not None:
        delta = {} if content is None else {"content": content}
        choices.append({"index": index, "delta": delta, "finish_reason": finish})
    out: dict[str, Any] = {"id": "c", "object": "chat.completion.chunk", "choices": choices}
    if usage is not None:
        out["usage"] = usage
    return out


def completion(content: str, usage: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "c",
        "object": "chat.completion",
        "created": 1,
        "model": "up-model",
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": content},
            }
        ],
        "usage": usage,
    }


class Caller:
    def __init__(self, gw: RunningGateway, credit: str = "10.00") -> None:
        self.gw = gw
        self.user, self.key = gw.user(credit)

    def call(self, path: str, body: dict[str, Any]) -> tuple[int, bytes, dict[str, Any], int]:
        """(status, raw answer, its usage row, what the user was debited)."""
        before = self.gw.balance(self.user)
        r = httpx.post(
            f"{self.gw.base_url}/v1/{path}",
            json=body,
            headers={"Authorization": f"Bearer {self.key}"},
            timeout=30,
        )
        rid = r.headers["x-request-id"]
        row = wait_until(
            lambda: [u for u in self.gw.usage(self.user) if u["request_id"] == rid],
            bool,
            wanted=f"the usage row of {rid}",
            show=len,
        )[0]
        return r.status_code, r.content, row, before - self.gw.balance(self.user)


class ScriptedUpstream:
    """Context manager: the server runs while inside; ``routes`` maps a path (``/v1/...``) to
    its handler and may change between calls; ``seen`` lists ``(path, json body)``."""

    def __init__(self) -> None:
        self.routes: dict[str, Handler] = {}
        self.seen: list[tuple[str, Any]] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._run, name="scripted-upstream", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def models_file(self, folder: Path) -> Path:
        path = folder / "scripted-models.yaml"
        path.write_text(MODELS.format(base_url=self.base_url))
        return path

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        data = await request.read()
        body = json.loads(data) if data else None
        self.seen.append((request.path, body))
        handler = self.routes.get(request.path)
        if handler is None:
            return web.json_response({"error": {"message": "no such route"}}, status=404)
        return await handler(request, body)

    def _run(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        try:
            self._loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, "127.0.0.1", 0)
            self._loop.run_until_complete(site.start())
            self.port = runner.addresses[0][1]
        except BaseException as exc:  # re-raised in the test's thread by __enter__
            self._loop.close()
            self._ready.set_exception(exc)
            return
        self._ready.set_result(None)
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())
        self._loop.close()

    def __enter__(self) -> ScriptedUpstream:
        self._thread.start()
        self._ready.result(timeout=10)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
