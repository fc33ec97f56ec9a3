"""The pipeline driven directly over ASGI: cancellation, settlement listeners and headers.

A second set of services runs in the test's own event loop on the running gateway's
database, so users and keys come from the admin API and usage is read back through it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson
import pytest
from starlette.types import Message

from gateway.endpoints import ENDPOINTS
from gateway.proxy.pipeline import handle
from gateway.records import UsageRecord
from gateway.services import Services, build, shutdown
from tests.support.gateway import RunningGateway, usd

CHAT = ENDPOINTS["chat/completions"]
Header = tuple[bytes, bytes]


def scope(key: str, body: bytes) -> dict[str, Any]:
    return {
        "type": "http",
        "method": "POST",
        "path": f"/v1/{CHAT.path}",
        "headers": [
            (b"authorization", f"Bearer {key}".encode()),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
    }


class Client:
    """One ASGI call's client side: sends the body, then stays connected."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.sent: list[Message] = []
        self.chunks = asyncio.Event()

    async def receive(self) -> Message:
        if self.body:
            body, self.body = self.body, b""
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # never disconnects
        raise AssertionError("unreachable")

    async def send(self, message: Message) -> None:
        self.sent.append(message)
        if sum(1 for m in self.sent if m.get("more_body")) >= 5:
            self.chunks.set()

    def headers(self) -> dict[bytes, bytes]:
        [start] = [m for m in self.sent if m["type"] == "http.response.start"]
        return dict(start["headers"])


def run(gw: RunningGateway, scenario: Callable[[Services], Awaitable[None]]) -> None:
    async def main() -> None:
        services = await build(gw.settings)
        try:
            await scenario(services)
        finally:
            await shutdown(services)

    asyncio.run(main())


def chat(content: str, **extra: Any) -> bytes:
    return orjson.dumps(
        {"model": "chat", "messages": [{"role": "user", "content": content}], **extra}
    )


def test_a_cancelled_call_is_settled_as_interrupted_and_stays_cancelled(gw: RunningGateway) -> None:
    uid, key = gw.user()
    body = chat("[[mock:chunks=50]] [[mock:chunk_delay=0.05]]", stream=True)

    async def scenario(services: Services) -> None:
        client = Client(body)
        task = asyncio.create_task(
            handle(services, CHAT, scope(key, body), client.receive, client.send)
        )
        await asyncio.wait_for(client.chunks.wait(), 20)
        task.cancel()  # what a server does at the end of its shutdown grace
        with pytest.raises(asyncio.CancelledError):
            await task
        assert services.inflight == 0

    run(gw, scenario)
    [row] = gw.wait_usage(uid, 1)
    assert (row["status"], row["usage_source"]) == ("interrupted", "counted")
    assert 4 <= row["completion_tokens"] < 50


def test_listeners_hear_every_settlement_and_their_headers_reach_whole_answers(
    gw: RunningGateway, caplog: pytest.LogCaptureFixture
) -> None:
    uid, key = gw.user()
    heard: list[tuple[str, int, int | None]] = []

    def broken(record: UsageRecord, balance: int | None) -> Sequence[Header]:
        raise RuntimeError("listener bug")

    def tagging(record: UsageRecord, balance: int | None) -> Sequence[Header]:
        heard.append((record.status, record.cost, balance))
        return [(b"x-test-cost", str(record.cost).encode())]

    async def call(services: Services, body: bytes) -> Client:
        client = Client(body)
        await handle(services, CHAT, scope(key, body), client.receive, client.send)
        return client

    async def scenario(services: Services) -> None:
        services.on_settled = (*services.on_settled, broken, tagging)
        whole = await call(services, chat("hi"))
        _, cost, balance = heard[0]
        assert whole.headers()[b"x-test-cost"] == str(cost).encode()
        assert balance == usd("10.00") - cost > 0
        streamed = await call(services, chat("hi", stream=True))
        # A stream's headers left before it was settled; the listener still heard it.
        assert b"x-test-cost" not in streamed.headers()
        failed = await call(services, chat("[[mock:status=503]]"))
        assert failed.headers()[b"x-test-cost"] == b"0"
        assert failed.sent[0]["status"] == 503

    with caplog.at_level(logging.ERROR, logger="gateway.pipeline"):
        run(gw, scenario)
    assert [status for status, _, _ in heard] == ["ok", "ok", "upstream_error"]
    rows = gw.wait_usage(uid, 3)
    assert len(rows) == 3
    assert len([r for r in caplog.records if "listener" in r.getMessage()]) == 3
