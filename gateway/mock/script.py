"""The request side of the mock upstream: every request logged with its parsed body, the
``[[mock:NAME=VALUE]]`` / ``x-mock`` directives read, the delay and status faults applied (or a
recording replayed, ``gateway.mock.replay``), and the prompt counted by the mock's token rule
(see ``gateway.mock.upstream``)."""

from __future__ import annotations

import asyncio
import contextvars
import re
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from gateway.mock.replay import RECORDINGS_KEY, replay

DEFAULT_PIECES = ("Hello", " from", " the", " mock", " model.")
MODEL_IDS = ("mock-gpt", "mock-gpt-mini", "mock-embedding", "gpt-4o-mini", "text-embedding-3-small")
EMBEDDING_DIMS = 8
DIRECTIVE_RE = re.compile(r"\[\[mock:([A-Za-z_]+)=([^\]]*)\]\]")
DIRECTIVE_TYPES: dict[str, Callable[[str], Any]] = {
    **dict.fromkeys(
        (
            "chunks",
            "status",
            "cut_after",
            "cached",
            "reasoning",
            "stored",
            "cache_write",
            "cache_write_hour",
            "web_searches",
        ),
        int,
    ),
    **dict.fromkeys(("delay", "chunk_delay"), float),
    "no_usage": lambda value: value.lower() in ("1", "true", "yes"),
    "replay": str,
}
REQUESTS_KEY = web.AppKey("mock_requests", deque)
# The log entry of the request being handled: aiohttp runs each request in its own task, so each
# handler sees its own.
LOG_ENTRY: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("mock_log_entry")
CAP_FIELDS = ("max_completion_tokens", "max_tokens", "max_output_tokens")
SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}

MockEndpoint = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(slots=True)
class Directives:
    chunks: int | None = None
    status: int | None = None
    no_usage: bool = False
    cut_after: int | None = None
    delay: float = 0.0
    chunk_delay: float = 0.0
    cached: int = 0
    reasoning: int = 0
    stored: int = 0
    replay: str | None = None
    # Anthropic-shaped answers (gateway.mock.anthropic): prompt tokens written to the cache at
    # the 5-minute and at the 1-hour TTL.
    cache_write: int = 0
    cache_write_hour: int = 0
    # Searches made when the request declares a web search tool (None: one), at most its
    # max_uses.
    web_searches: int | None = None


@dataclass(slots=True)
class ScriptedReply:
    """A parsed request that survived the fault directives, and the reply they script."""

    body: dict[str, Any]
    model: str
    mock: Directives
    prompt_tokens: int
    pieces: list[str]
    uid: str
    created: int


class Replay(Exception):
    """Raised inside a handler to answer with the recording named ``name``."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


class Reject(Exception):
    """Raised inside a handler to answer with an OpenAI-style error body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def json_response(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(obj), status=status, content_type="application/json")


def error_response(status: int, message: str) -> web.Response:
    kind = "server_error" if status >= 500 else "invalid_request_error"
    error = {"message": message, "type": kind, "code": None, "param": None}
    return json_response({"error": error}, status)


def endpoint(fn: Callable[[web.Request, Any], Awaitable[web.StreamResponse]]) -> MockEndpoint:
    """Log the request with its JSON body (parsed once) and turn Reject into an error reply."""

    async def handle(request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = None
        headers = {name.lower(): value for name, value in request.headers.items()}
        entry = {
            "method": request.method,
            "path": request.path,
            "headers": headers,
            "body": body,
            "delay": 0.0,
        }
        request.app[REQUESTS_KEY].append(entry)
        LOG_ENTRY.set(entry)
        try:
            try:
                return await fn(request, body)
            except Replay as exc:
                recording = request.app[RECORDINGS_KEY].get(exc.name)
                if recording is None:
                    raise Reject(400, f"no mock recording named {exc.name!r}") from None
                return await replay(request, recording)
        except Reject as exc:
            return error_response(exc.status, exc.message)

    return handle


def collect(value: Any, texts: list[str]) -> int:
    """Append every prompt string in value to texts; return how many raw token ids it holds."""
    if isinstance(value, str):
        texts.append(value)
        return 0
    if isinstance(value, int) and not isinstance(value, bool):
        return 1
    if isinstance(value, list):
        return sum(collect(item, texts) for item in value)
    if isinstance(value, dict):
        # Chat messages, content parts ({"type": "text", "text": ...}) and Responses items.
        return collect(value.get("content"), texts) + collect(value.get("text"), texts)
    return 0


def parse_directives(pairs: list[tuple[str, str]]) -> Directives:
    mock = Directives()
    for name, raw in pairs:
        if name not in DIRECTIVE_TYPES:
            raise Reject(400, f"unknown mock directive {name!r}")
        try:
            setattr(mock, name, DIRECTIVE_TYPES[name](raw.strip()))
        except ValueError:
            raise Reject(400, f"bad value for mock directive {name}: {raw!r}") from None
    return mock


def header_pairs(header: str) -> list[tuple[str, str]]:
    pairs = (item.split("=", 1) for item in header.split(";") if "=" in item)
    return [(name.strip(), value) for name, value in pairs]


async def begin(
    request: web.Request, body: Any, prompt: Callable[[dict[str, Any]], Any]
) -> ScriptedReply:
    """Read directives, apply the delay/status faults and count prompt tokens."""
    if not isinstance(body, dict):
        raise Reject(400, "request body must be a JSON object")
    texts: list[str] = []
    token_ids = collect(prompt(body), texts)
    text = "\n".join(texts)
    mock = parse_directives(
        DIRECTIVE_RE.findall(text) + header_pairs(request.headers.get("x-mock", ""))
    )
    if mock.delay > 0:
        await asyncio.sleep(mock.delay)
        LOG_ENTRY.get()["delay"] = mock.delay
    if mock.replay is not None:
        raise Replay(mock.replay.strip())
    if mock.status is not None and mock.status >= 400:
        raise Reject(mock.status, f"mock upstream forced status {mock.status}")
    pieces = list(DEFAULT_PIECES) if mock.chunks is None else [f" w{i}" for i in range(mock.chunks)]
    caps = [body[f] for f in CAP_FIELDS if type(body.get(f)) is int]
    if caps:
        pieces = pieces[: max(caps[0], 0)]
    prompt_tokens = token_ids + len(DIRECTIVE_RE.sub(" ", text).split()) + mock.stored
    model = str(body.get("model") or MODEL_IDS[0])
    return ScriptedReply(
        body, model, mock, prompt_tokens, pieces, uuid.uuid4().hex, int(time.time())
    )
