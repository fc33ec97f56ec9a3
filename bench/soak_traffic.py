"""The soak's callers: mixed /v1 traffic over every endpoint (streamed and not, with upstream
faults and callers that leave), each call logged with the request id the gateway answered with,
so the end checks can match calls to usage records."""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from soak_stack import Gateway

# What a call asks the mock upstream to do (the mock's [[mock:...]] directives), by weight.
FAULTS: dict[str, float] = {
    "": 70,  # a normal answer
    "5xx": 6,  # the upstream answers 500 on every attempt
    "stall": 2,  # the upstream sleeps past GATEWAY_UPSTREAM_TIMEOUT: 504
    "cut": 7,  # a stream the upstream drops after 3 pieces (streams only)
    "leave": 7,  # the caller disconnects after 3 events of a slow stream (streams only)
    "abandon": 2,  # the caller gives up before any answer (its request id is never seen)
    "overdraft": 3,  # the upstream reports a prompt it stores itself: billed past the reservation
}
ENDPOINTS: dict[str, float] = {
    "chat": 35,
    "completions": 15,
    "embeddings": 10,
    "responses": 20,
    "messages": 20,
}
TERMINAL = (b"[DONE]", b"response.completed", b"message_stop")
# An error event in any endpoint's shape (OpenAI's error chunk, Responses' and Anthropic's
# "type": "error"); not the "error": null every Responses event carries.
ERROR_EVENT = re.compile(rb'^data: \{"error"|"type": ?"error"')


@dataclass
class Call:
    endpoint: str
    stream: bool
    fault: str
    gateway: str
    generation: int  # the gateway process's start count when the call was sent
    user: str
    started: float
    ended: float = 0.0
    status: int = 0  # 0: no answer
    code: str | None = None
    request_id: str | None = None
    sent: bool = True  # False: the connection was refused, nothing reached a gateway
    outcome: str = ""


def _words(rng: random.Random) -> str:
    return " ".join(rng.choice(("alpha", "beta", "gamma", "delta", "soak")) for _ in range(8))


def _directives(fault: str, stream: bool, rng: random.Random) -> str:
    pieces = rng.randint(3, 20)
    return {
        "": f"[[mock:chunks={pieces}]]",
        "5xx": "[[mock:status=500]]",
        "stall": "[[mock:delay=4]]",
        "cut": "[[mock:chunks=20]] [[mock:cut_after=3]]",
        "leave": "[[mock:chunks=40]] [[mock:chunk_delay=0.05]]",
        "abandon": "[[mock:delay=2]]",
        "overdraft": f"[[mock:chunks={pieces}]] [[mock:stored=20000]]",
    }[fault]


def request(endpoint: str, stream: bool, fault: str, rng: random.Random) -> tuple[str, dict]:
    """(path, body) of one call."""
    text = f"{_words(rng)} {_directives(fault, stream, rng)}"
    cap = rng.choice((20, 50, 100))
    if endpoint == "chat":
        model = "chat" if fault == "overdraft" else rng.choice(("chat", "cheap"))
        messages = [{"role": "user", "content": text}]
        body = {"model": model, "messages": messages, "max_tokens": cap, "stream": stream}
        return "/v1/chat/completions", body
    if endpoint == "completions":
        return "/v1/completions", {"model": "cheap", "prompt": text, "max_tokens": cap,
                                   "stream": stream}  # fmt: skip
    if endpoint == "embeddings":
        return "/v1/embeddings", {"model": "embed", "input": text}
    if endpoint == "responses":
        return "/v1/responses", {"model": "chat", "input": text, "max_output_tokens": cap,
                                 "stream": stream}  # fmt: skip
    messages = [{"role": "user", "content": text}]
    return "/v1/messages", {"model": "claude", "max_tokens": cap, "messages": messages,
                            "stream": stream}  # fmt: skip


def _error_code(raw: bytes) -> str | None:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return "not-json"
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return None
    return str(error.get("code") or error.get("type") or "") or None


class Traffic:
    """Sends calls at ``rate`` per second (at most ``in_flight`` at once) until ``stop``."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        gateways: Sequence[Gateway],
        keys: Sequence[tuple[str, str]],
        *,
        rate: float,
        in_flight: int,
        seed: int,
    ) -> None:
        self.client, self.gateways, self.keys = client, gateways, keys
        self.rate, self.rng = rate, random.Random(seed)
        self.slots = asyncio.Semaphore(in_flight)
        self.calls: list[Call] = []
        self.peak = 0  # most calls open at once
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self, stop: asyncio.Event) -> None:
        # Arrivals on an absolute schedule, so time spent in the loop does not lower the rate.
        due = time.monotonic()
        while not stop.is_set():
            await self.slots.acquire()
            task = asyncio.create_task(self._one())
            self._tasks.add(task)
            self.peak = max(self.peak, len(self._tasks))
            task.add_done_callback(self._tasks.discard)
            task.add_done_callback(lambda _: self.slots.release())
            due += self.rng.expovariate(self.rate)
            await asyncio.sleep(max(0.0, due - time.monotonic()))
        if self._tasks:
            await asyncio.wait(self._tasks)

    def _pick(self) -> tuple[Call, str, dict, str]:
        rng = self.rng
        endpoint = rng.choices(list(ENDPOINTS), list(ENDPOINTS.values()))[0]
        stream = endpoint != "embeddings" and rng.random() < 0.5
        fault = rng.choices(list(FAULTS), list(FAULTS.values()))[0]
        if fault in ("cut", "leave") and not stream:
            fault = ""
        if fault == "overdraft" and endpoint != "chat":
            fault = ""
        user, key = rng.choice(self.keys)
        gw = rng.choice(self.gateways)
        call = Call(endpoint, stream, fault, gw.name, gw.generation, user, time.monotonic())
        path, body = request(endpoint, stream, fault, rng)
        return call, f"{gw.base}{path}", body, key

    async def _one(self) -> None:
        call, url, body, key = self._pick()
        self.calls.append(call)
        headers = {"Authorization": f"Bearer {key}", "x-gateway-tags": f"soak,{call.fault or 'ok'}"}
        timeout = httpx.Timeout(0.5 if call.fault == "abandon" else 30.0, connect=5.0)
        try:
            async with self.client.stream(
                "POST", url, json=body, headers=headers, timeout=timeout
            ) as answer:
                call.status = answer.status_code
                call.request_id = answer.headers.get("x-request-id")
                if answer.status_code != 200:
                    call.code = _error_code(await answer.aread())
                    call.outcome = "refused" if refused(call) else "upstream error"
                elif not call.stream:
                    await answer.aread()
                    call.outcome = "complete"
                else:
                    call.outcome = await self._read_stream(answer, leave=call.fault == "leave")
        except httpx.ConnectError:
            call.sent = False
            call.outcome = "connection refused"
        except httpx.HTTPError as exc:
            call.outcome = f"no answer: {type(exc).__name__}" if not call.status else "broken"
        call.ended = time.monotonic()

    @staticmethod
    async def _read_stream(answer: httpx.Response, *, leave: bool) -> str:
        events = 0
        async for line in answer.aiter_lines():
            if not line.startswith("data:"):
                continue
            events += 1
            if leave and events >= 3:
                return "left"  # leaving the block closes the connection mid-stream
            data = line.encode()
            if any(mark in data for mark in TERMINAL):
                return "complete"
            if ERROR_EVENT.search(data):
                return "error event"
        return "ended early"


def refused(call: Call) -> bool:
    """Refused before anything was reserved (no usage record): the gateway's own 4xx, and
    503 (Redis down, before admission). Upstream failures are 500 and 504 here."""
    return 400 <= call.status < 500 or call.status == 503


def served(call: Call) -> bool:
    """Answered after admission: a usage record must exist."""
    return call.status != 0 and not refused(call)


def summary(calls: Sequence[Call]) -> dict[str, Any]:
    by_status: dict[str, int] = {}
    by_outcome: dict[str, int] = {}
    for c in calls:
        label = f"{c.status} {c.code}" if c.code else str(c.status)
        by_status[label] = by_status.get(label, 0) + 1
        by_outcome[c.outcome] = by_outcome.get(c.outcome, 0) + 1
    return {"calls": len(calls), "status": by_status, "outcome": by_outcome}
