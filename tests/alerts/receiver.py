"""A real webhook receiver for the alert tests: aiohttp on a free port, in its own thread.

Each path answers from a script (``"ok"``, ``"500"``, ``"slow"``: sleeps past the sender's
timeout, then answers 200 too late), repeating the script's last step, and records every
request it got: headers, raw body and the answer it chose."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field

from aiohttp import web

SLOW = 2.0  # seconds a "slow" answer takes: above the tests' GATEWAY_ALERT_WEBHOOK_TIMEOUT


@dataclass
class Hit:
    path: str
    headers: dict[str, str]
    body: bytes
    answer: str


@dataclass
class Receiver:
    port: int
    scripts: dict[str, list[str]]
    hits: list[Hit] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def of(self, path: str) -> list[Hit]:
        return [h for h in self.hits if h.path == path]

    def start(self) -> Receiver:
        self._thread.start()
        assert self._ready.wait(10), "the receiver did not start"
        return self

    def stop(self) -> None:
        async def cleanup() -> None:
            if self._runner is not None:
                await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        script = self.scripts[request.path]
        seen = len(self.of(request.path))
        answer = script[min(seen, len(script) - 1)]
        self.hits.append(Hit(request.path, dict(request.headers), body, answer))
        if answer == "slow":
            await asyncio.sleep(SLOW)
        if answer == "500":
            return web.Response(status=500, text="boom")
        return web.Response(status=200, text="ok")

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        for path in self.scripts:
            app.router.add_post(path, self._handle)
        self._runner = web.AppRunner(app)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        self._loop.run_until_complete(site.start())
        self._ready.set()
        self._loop.run_forever()
        self._loop.close()
