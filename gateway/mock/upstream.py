"""A fast, deterministic fake OpenAI-compatible upstream for demos, tests and benchmarks.

Serves POST /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/responses (streaming
like OpenAI), Anthropic's /v1/messages and /v1/messages/count_tokens (``gateway.mock.anthropic``)
and GET /v1/models. GET /_mock/requests lists the last 200 requests (method, path,
lower-cased headers, parsed JSON body, and ``delay``: the seconds slept before answering, set once
the sleep is over; newest last); DELETE /_mock/requests clears them.

Token rule (so metering tests can assert exact numbers): prompt tokens = whitespace-separated
words in all prompt text (message content strings and text parts, ``prompt``, embeddings
``input``, responses ``instructions`` + ``input``) with directives removed, plus one per raw
integer token id, plus ``stored``. Completion tokens = reply pieces + ``reasoning`` (OpenAI
counts reasoning inside completion tokens). The reply is "Hello from the mock model." in 5
pieces, cut to the request's output cap (``max_completion_tokens``, ``max_tokens`` or
``max_output_tokens``, first present) as a provider would.

Faults are driven by directives ``[[mock:NAME=VALUE]]`` in the prompt text or the header
``x-mock: NAME=VALUE;NAME2=VALUE2`` (header wins): ``chunks=N`` reply of N pieces " w0" ...;
``status=CODE`` OpenAI error body; ``no_usage=1`` omit usage; ``cut_after=N`` drop the
connection after N streamed pieces; ``delay=S`` sleep before answering; ``chunk_delay=S``
sleep before each streamed piece; ``cached=N`` / ``reasoning=N`` usage details; ``stored=N``
N more prompt tokens, as a prompt the provider keeps (a stored conversation, a cache) adds;
``replay=NAME`` answer with a recording registered under NAME (``gateway.mock.replay``: any
status, headers, body or stream chunks, byte for byte; ``PUT /_mock/recordings/NAME``).

A Responses request with a web search tool (``type: web_search...``) first searches
``web_searches=N`` times (one by default, at most its ``max_tool_calls``), as OpenAI's
Responses API shows it: a ``web_search_call`` output item per search before the message, each
adding ``RESULT_TOKENS`` (100) input tokens, none counted in usage; a stream sends per search
``response.output_item.added``, ``response.web_search_call.in_progress`` / ``.searching`` /
``.completed`` and ``response.output_item.done``, and ``cut_after=N`` then counts every event
after ``response.in_progress``.
"""

from __future__ import annotations

import base64
import itertools
import struct
import zlib
from collections import deque
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

from gateway.mock import anthropic
from gateway.mock.events import sse, stream
from gateway.mock.replay import RECORDINGS_KEY, recordings
from gateway.mock.script import (
    EMBEDDING_DIMS,
    MODEL_IDS,
    REQUESTS_KEY,
    Reject,
    ScriptedReply,
    begin,
    endpoint,
    json_response,
)


def chat_usage(reply: ScriptedReply) -> dict[str, Any]:
    output = len(reply.pieces) + reply.mock.reasoning
    return {
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": output,
        "total_tokens": reply.prompt_tokens + output,
        "prompt_tokens_details": {"cached_tokens": min(reply.mock.cached, reply.prompt_tokens)},
        "completion_tokens_details": {"reasoning_tokens": reply.mock.reasoning},
    }


def responses_usage(reply: ScriptedReply) -> dict[str, Any]:
    usage = chat_usage(reply)
    return {
        "input_tokens": usage["prompt_tokens"],
        "input_tokens_details": usage["prompt_tokens_details"],
        "output_tokens": usage["completion_tokens"],
        "output_tokens_details": usage["completion_tokens_details"],
        "total_tokens": usage["total_tokens"],
    }


def choice(finish: str | None, **fields: Any) -> dict[str, Any]:
    return {"index": 0, **fields, "logprobs": None, "finish_reason": finish}


def envelope(reply: ScriptedReply, kind: str, choices: list[dict[str, Any]]) -> dict[str, Any]:
    prefix = "chatcmpl" if kind.startswith("chat") else "cmpl"
    return {
        "id": f"{prefix}-{reply.uid}",
        "object": kind,
        "created": reply.created,
        "model": reply.model,
        "system_fingerprint": None,
        "choices": choices,
    }


def completed(reply: ScriptedReply, kind: str, **fields: Any) -> web.Response:
    obj = envelope(reply, kind, [choice("stop", **fields)])
    return json_response(obj if reply.mock.no_usage else {**obj, "usage": chat_usage(reply)})


async def stream_choices(
    request: web.Request,
    reply: ScriptedReply,
    kind: str,
    head: list[dict[str, Any]],
    piece: Callable[[str], dict[str, Any]],
) -> web.StreamResponse:
    options = reply.body.get("stream_options")
    with_usage = isinstance(options, dict) and options.get("include_usage") is True

    def chunk(choices: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> bytes:
        obj = envelope(reply, kind, choices)
        if with_usage:
            obj["usage"] = usage  # OpenAI sends "usage": null on every chunk but the last
        return sse(obj)

    last = len(reply.pieces) - 1
    pieces = reply.pieces or [""]  # an empty reply still needs a chunk carrying finish_reason
    body = [
        chunk([choice("stop" if i >= last else None, **piece(p))]) for i, p in enumerate(pieces)
    ]
    tail = [chunk([], chat_usage(reply))] if with_usage and not reply.mock.no_usage else []
    first = [chunk([choice(None, **fields)]) for fields in head]
    return await stream(request, reply, first, body, [*tail, b"data: [DONE]\n\n"])


async def chat_completions(request: web.Request, body: Any) -> web.StreamResponse:
    reply = await begin(request, body, lambda b: b.get("messages"))
    if not reply.body.get("stream"):
        message = {"role": "assistant", "content": "".join(reply.pieces), "refusal": None}
        return completed(reply, "chat.completion", message=message)
    role = {"delta": {"role": "assistant", "content": "", "refusal": None}}
    kind = "chat.completion.chunk"
    return await stream_choices(request, reply, kind, [role], lambda p: {"delta": {"content": p}})


async def completions(request: web.Request, body: Any) -> web.StreamResponse:
    reply = await begin(request, body, lambda b: b.get("prompt"))
    if not reply.body.get("stream"):
        return completed(reply, "text_completion", text="".join(reply.pieces))
    return await stream_choices(request, reply, "text_completion", [], lambda p: {"text": p})


def embedding_inputs(value: Any) -> list[Any]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not value:
        raise Reject(400, "'input' must be a non-empty string, array of strings or token arrays")
    return [value] if all(isinstance(item, int) for item in value) else value


def embedding_vector(item: Any, as_base64: bool) -> list[float] | str:
    # Multiples of 1/8 survive float32, so base64 and float answers decode to equal vectors.
    seed = zlib.crc32(orjson.dumps(item))
    vector = [((seed >> (4 * k)) & 0xF) / 8.0 - 1.0 for k in range(EMBEDDING_DIMS)]
    if not as_base64:
        return vector
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


async def embeddings(request: web.Request, body: Any) -> web.StreamResponse:
    reply = await begin(request, body, lambda b: b.get("input"))
    as_base64 = reply.body.get("encoding_format") == "base64"
    data = [
        {"object": "embedding", "index": index, "embedding": embedding_vector(item, as_base64)}
        for index, item in enumerate(embedding_inputs(reply.body.get("input")))
    ]
    obj: dict[str, Any] = {"object": "list", "data": data, "model": reply.model}
    if not reply.mock.no_usage:
        obj["usage"] = {"prompt_tokens": reply.prompt_tokens, "total_tokens": reply.prompt_tokens}
    return json_response(obj)


def response_object(reply: ScriptedReply, output: list[Any], done: bool) -> dict[str, Any]:
    obj = {
        "id": f"resp_{reply.uid}",
        "object": "response",
        "created_at": reply.created,
        "status": "completed" if done else "in_progress",
        "error": None,
        "incomplete_details": None,
        "instructions": reply.body.get("instructions"),
        "metadata": {},
        "model": reply.model,
        "output": output,
        "parallel_tool_calls": True,
        "temperature": 1.0,
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "usage": responses_usage(reply) if done else None,
    }
    if done and reply.mock.no_usage:
        del obj["usage"]
    return obj


def web_search_calls(reply: ScriptedReply) -> list[dict[str, Any]]:
    """The ``web_search_call`` items a Responses request with a web search tool gets:
    ``web_searches=N`` of them (one by default), at most its ``max_tool_calls``."""
    tools = reply.body.get("tools")
    if not any(
        isinstance(t, dict) and str(t.get("type", "")).startswith("web_search") for t in tools or ()
    ):
        return []
    wanted = 1 if reply.mock.web_searches is None else reply.mock.web_searches
    most = reply.body.get("max_tool_calls")
    count = min(wanted, most) if type(most) is int else wanted
    return [
        {
            "id": f"ws_{i}_{reply.uid[:16]}",
            "type": "web_search_call",
            "status": "completed",
            "action": {"type": "search", "query": "mock", "sources": None},
        }
        for i in range(count)
    ]


async def responses(request: web.Request, body: Any) -> web.StreamResponse:
    reply = await begin(request, body, lambda b: [b.get("instructions"), b.get("input")])
    calls = web_search_calls(reply)
    reply.prompt_tokens += len(calls) * anthropic.RESULT_TOKENS  # search content is input
    text, msg_id = "".join(reply.pieces), f"msg_{reply.uid}"
    part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    item = {
        "id": msg_id,
        "type": "message",
        "status": "completed",
        "role": "assistant",
        "content": [part],
    }
    if not reply.body.get("stream"):
        return json_response(response_object(reply, [*calls, item], done=True))
    numbers = itertools.count()
    at = {"item_id": msg_id, "output_index": len(calls), "content_index": 0}

    def event(kind: str, **payload: Any) -> bytes:
        return sse({"type": kind, "sequence_number": next(numbers), **payload}, event=kind)

    pending = response_object(reply, [], done=False)
    head = [
        event("response.created", response=pending),
        event("response.in_progress", response=pending),
    ]
    searches: list[bytes] = []
    for index, call in enumerate(calls):
        on = {"output_index": index, "item_id": call["id"]}
        started = {k: v for k, v in call.items() if k != "action"}
        searches += [
            event(
                "response.output_item.added",
                output_index=index,
                item={**started, "status": "in_progress"},
            ),
            *(
                event(f"response.web_search_call.{s}", **on)
                for s in ("in_progress", "searching", "completed")
            ),
            event("response.output_item.done", output_index=index, item=call),
        ]
    opened = [
        event(
            "response.output_item.added",
            output_index=len(calls),
            item={**item, "status": "in_progress", "content": []},
        ),
        event("response.content_part.added", **at, part={**part, "text": ""}),
    ]
    body = [event("response.output_text.delta", **at, delta=p, logprobs=[]) for p in reply.pieces]
    if calls:
        # Every event after the response opened is a piece: cut_after=N can cut mid-search.
        body = [*searches, *opened, *body]
    else:
        head += opened
    tail = [
        event("response.output_text.done", **at, text=text, logprobs=[]),
        event("response.content_part.done", **at, part=part),
        event("response.output_item.done", output_index=len(calls), item=item),
        event("response.completed", response=response_object(reply, [*calls, item], done=True)),
    ]
    return await stream(request, reply, head, body, tail)


async def list_models(request: web.Request, body: Any) -> web.StreamResponse:
    data = [{"id": m, "object": "model", "created": 0, "owned_by": "mock"} for m in MODEL_IDS]
    return json_response({"object": "list", "data": data})


async def logged_requests(request: web.Request) -> web.StreamResponse:
    log = request.app[REQUESTS_KEY]
    if request.method == "DELETE":
        log.clear()
    return json_response(list(log))


def build_app() -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[REQUESTS_KEY] = deque(maxlen=200)
    app[RECORDINGS_KEY] = {}
    app.router.add_post("/v1/chat/completions", endpoint(chat_completions))
    app.router.add_post("/v1/completions", endpoint(completions))
    app.router.add_post("/v1/embeddings", endpoint(embeddings))
    app.router.add_post("/v1/responses", endpoint(responses))
    app.router.add_post("/v1/messages", endpoint(anthropic.messages))
    app.router.add_post("/v1/messages/count_tokens", endpoint(anthropic.count_tokens))
    app.router.add_get("/v1/models", endpoint(list_models))
    app.router.add_get("/_mock/requests", logged_requests)
    app.router.add_delete("/_mock/requests", logged_requests)
    app.router.add_get("/_mock/recordings", recordings)
    app.router.add_delete("/_mock/recordings", recordings)
    app.router.add_put("/_mock/recordings/{name}", recordings)
    return app
