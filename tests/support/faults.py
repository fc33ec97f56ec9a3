"""The mock upstream with failures queued by the test: each request it gets first takes the next
queued ``Fault`` (a status with its headers, after a delay) if there is one, and is otherwise
answered by the mock itself. Two of them on two ports are two providers, one failing while the
other serves the same request (the mock's own directives are in the request, so they would
apply to both).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import orjson
from aiohttp import web

from gateway.mock.runner import MockUpstreamThread
from gateway.mock.script import REQUESTS_KEY
from gateway.mock.upstream import build_app


@dataclass(frozen=True)
class Fault:
    status: int = 503
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering (past the gateway's timeout: a timeout)


class FaultyMock(MockUpstreamThread):
    """``faults`` is a deque the test appends to (deque appends and pops are thread-safe)."""

    def __init__(self) -> None:
        self.faults: deque[Fault] = deque()
        super().__init__(app=lambda: _faulty_app(self.faults))

    def fail(self, *faults: Fault) -> None:
        self.faults.extend(faults)

    def models_seen(self) -> list[str]:
        """The upstream model of every request it got, faulted or not, oldest first."""
        return [r["body"]["model"] for r in self.requests() if r["path"].startswith("/v1/")]


def _faulty_app(faults: deque[Fault]) -> web.Application:
    app = build_app()

    @web.middleware
    async def fail_next(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if not request.path.startswith("/v1/") or not faults:
            return await handler(request)
        fault = faults.popleft()
        body = orjson.loads(await request.read())
        entry = {"method": request.method, "path": request.path, "body": body, "fault": fault}
        request.app[REQUESTS_KEY].append(entry)
        await asyncio.sleep(fault.delay)
        error = {"message": f"queued fault {fault.status}", "type": "server_error"}
        return web.Response(
            body=orjson.dumps({"error": error}),
            status=fault.status,
            headers={**fault.headers, "Content-Type": "application/json"},
        )

    app.middlewares.append(fail_next)
    return app
