"""A gateway in front of the mock upstream replaying recorded answers (gateway/mock/replay.py):
each call registers a recording, sends a request selecting it through the openai SDK, and
reads back the usage row and what the caller was debited.

Use the fixture by importing it into a test module: ``from tests.support.replayed import
relay_fixture  # noqa: F401``; tests then take ``relay: Relay``. The models are the cases'
(tests/support/scripted.py: `m` at $1 in and $10 out per 1M tokens), on the mock's provider.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest

from gateway.mock.replay import Recording
from gateway.mock.runner import MockUpstreamThread
from tests.support.gateway import GatewayFactory, RunningGateway, usd
from tests.support.scripted import MODELS

CREDIT = "10.00"
SSE = ("Content-Type", "text/event-stream")
JSON = ("Content-Type", "application/json")


@dataclass(frozen=True)
class Raw:
    """An answer as it reached the client: status, headers and the bytes (decoded by httpx
    only if they were labelled with a Content-Encoding)."""

    status: int
    headers: httpx.Headers
    body: bytes


@dataclass(frozen=True)
class Metered:
    """One call: what the client got (``answer``, or ``error`` when the SDK raised), its usage
    row and the user's debit in nano-USD."""

    answer: Any
    error: openai.APIStatusError | None
    row: dict[str, Any]
    debit: int

    @property
    def cost(self) -> int:
        return usd(self.row["cost"])


# A call through the SDK with the given client and prompt text; returns what the client read.
Send = Callable[[openai.OpenAI, str], Any]


class Relay:
    def __init__(self, gw: RunningGateway, mock: MockUpstreamThread) -> None:
        self.gw = gw
        self.mock = mock

    def metered(self, recording: Recording, send: Send) -> Metered:
        name = self.mock.record(recording)
        uid, key = self.gw.user(CREDIT)
        error = None
        try:
            answer = send(self.gw.client(key), f"hi [[mock:replay={name}]]")
        except openai.APIStatusError as exc:
            answer, error = None, exc
        row = self.gw.wait_usage(uid, 1)[0]
        return Metered(answer, error, row, usd(CREDIT) - self.gw.balance(uid))


def chunked(data: bytes, size: int) -> tuple[bytes, ...]:
    return tuple(data[i : i + size] for i in range(0, len(data), size))


def streamed(pieces: Sequence[bytes], *headers: tuple[str, str], cut: bool = False) -> Recording:
    """A stream whose pieces arrive as separate writes, a millisecond apart."""
    return Recording(headers=tuple(headers), chunks=tuple(pieces), chunk_delay=0.001, cut=cut)


def whole(body: bytes, *headers: tuple[str, str], status: int = 200) -> Recording:
    return Recording(status=status, headers=tuple(headers), body=body)


def _messages(prompt: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}]


def raw_chat(*, stream: bool = False, **fields: Any) -> Send:
    """A chat call whose answer is kept as the raw bytes the client received."""

    def send(client: openai.OpenAI, prompt: str) -> Raw:
        api = client.chat.completions
        if stream:
            with api.with_streaming_response.create(
                model="m", messages=_messages(prompt), stream=True, **fields
            ) as r:
                return Raw(r.status_code, r.headers, b"".join(r.iter_bytes()))
        got = api.with_raw_response.create(model="m", messages=_messages(prompt), **fields)
        return Raw(got.status_code, got.headers, got.content)

    return send


def read_chat(*, stream: bool = False, **fields: Any) -> Send:
    """A chat call read as the SDK reads it: the text of the answer (of every chunk)."""

    def send(client: openai.OpenAI, prompt: str) -> str:
        api = client.chat.completions
        if stream:
            chunks = api.create(model="m", messages=_messages(prompt), stream=True, **fields)
            return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        return (
            api.create(model="m", messages=_messages(prompt), **fields).choices[0].message.content
            or ""
        )

    return send


def raw_responses(**fields: Any) -> Send:
    """A streamed Responses call, kept raw."""

    def send(client: openai.OpenAI, prompt: str) -> Raw:
        with client.responses.with_streaming_response.create(
            model="m", input=prompt, stream=True, **fields
        ) as r:
            return Raw(r.status_code, r.headers, b"".join(r.iter_bytes()))

    return send


@pytest.fixture(name="relay", scope="module")
def relay_fixture(
    upstream: MockUpstreamThread, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Relay]:
    """One embedded gateway per test module, its models served by the mock upstream."""
    tmp = tmp_path_factory.mktemp("replayed")
    models = tmp / "replayed-models.yaml"
    models.write_text(MODELS.format(base_url=upstream.base_url))
    factory = GatewayFactory(upstream, tmp)
    try:
        yield Relay(factory.start(GATEWAY_MODELS=str(models)), upstream)
    finally:
        factory.close()
