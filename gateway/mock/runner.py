"""Running the mock upstream: in this process's loop, in a background thread, or forever."""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from aiohttp import web

from gateway.mock.replay import RECORDINGS_KEY, Recording
from gateway.mock.script import REQUESTS_KEY
from gateway.mock.upstream import build_app


async def start(
    host: str = "127.0.0.1", port: int = 0, app: Callable[[], web.Application] = build_app
) -> tuple[web.AppRunner, int]:
    """Serves ``app()`` (the mock, or a test's own upstream) on ``host:port`` (0: a free one)."""
    # A short shutdown timeout so stopping during a slow stream does not hang a test run.
    runner = web.AppRunner(app(), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner, runner.addresses[0][1]


class MockUpstreamThread:
    """Context manager running the mock (or ``app()``, which must keep a REQUESTS_KEY log) on a
    free port in a thread with its own event loop."""

    def __init__(
        self, host: str = "127.0.0.1", app: Callable[[], web.Application] = build_app
    ) -> None:
        self.host, self.port, self._app = host, 0, app
        self._loop: asyncio.AbstractEventLoop  # created by __enter__, closed by the thread
        self._runner: web.AppRunner | None = None
        self._started: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._run, name="mock-upstream", daemon=True)
        self._names = itertools.count(1)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def _run(self) -> None:
        loop = self._loop
        try:
            self._runner, self.port = loop.run_until_complete(start(self.host, app=self._app))
        except BaseException as exc:  # re-raised in the caller's thread by __enter__
            self._started.set_exception(exc)
        else:
            self._started.set_result(None)
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def __enter__(self) -> MockUpstreamThread:
        self._loop = asyncio.new_event_loop()
        self._thread.start()
        self._started.result()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()

    def _on_loop(self, fn: Callable[[web.Application], Any]) -> Any:
        # The app's log and recordings are only ever touched from the loop thread: no lock.
        assert self._runner is not None, "use MockUpstreamThread as a context manager"
        app = self._runner.app
        done: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def run() -> None:
            try:
                done.set_result(fn(app))
            except BaseException as exc:  # re-raised in the caller's thread, never a hang
                done.set_exception(exc)

        self._loop.call_soon_threadsafe(run)
        return done.result()

    def requests(self) -> list[dict[str, Any]]:
        def copy(app: web.Application) -> list[dict[str, Any]]:
            log: deque[dict[str, Any]] = app[REQUESTS_KEY]
            return list(log)

        found: list[dict[str, Any]] = self._on_loop(copy)
        return found

    def clear(self) -> None:
        self._on_loop(lambda app: app[REQUESTS_KEY].clear())

    def record(self, recording: Recording, name: str | None = None) -> str:
        """Registers ``recording`` (under a fresh name unless given); returns the name, for
        ``[[mock:replay=NAME]]``. Only for the mock's own app (it keeps the recordings)."""
        # Short names keep the directive's share of a test's prompt small and steady.
        name = name or f"r{next(self._names)}"
        self._on_loop(lambda app: app[RECORDINGS_KEY].__setitem__(name, recording))
        return name


def main(host: str, port: int) -> None:
    try:
        import uvloop
    except ImportError:
        loop = asyncio.new_event_loop()
    else:
        loop = uvloop.new_event_loop()
    web.run_app(build_app(), host=host, port=port, access_log=None, loop=loop)
