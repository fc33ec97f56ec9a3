"""The mock upstream's Anthropic Messages API: POST /v1/messages (whole and streamed, with
Anthropic's events) and POST /v1/messages/count_tokens.

Same token rule and directives as the OpenAI side (``gateway.mock.upstream``): prompt tokens =
words in ``system`` and the messages' text (tool results included), ``stored`` more, and a
quarter of the compact JSON bytes of the tools the caller defines (``input_schema``), as a
real model reads them;
``cached=N`` of them are cache reads, ``cache_write=N`` written at the 5-minute TTL and
``cache_write_hour=N`` at the 1-hour TTL, the rest is ``input_tokens`` (Anthropic counts cache
reads and writes beside it). Output tokens = reply pieces, plus the thinking pieces when the
request enables ``thinking``. A request with ``tools`` whose last message carries no
``tool_result`` is answered with a ``tool_use`` of the first tool it runs itself (input
``{"query": "mock"}``, ``TOOL_TOKENS`` output tokens) and ``stop_reason: tool_use``. A request
with a web search tool (``type: web_search_...``) first searches ``web_searches=N`` times (one
by default, at most the tool's ``max_uses``): per search a ``server_tool_use`` block
(``TOOL_TOKENS`` output tokens) and a ``web_search_tool_result`` block whose results add
``RESULT_TOKENS`` input tokens; usage then reports ``server_tool_use.web_search_requests``,
and a stream's ``message_delta`` repeats the grown input count, as Anthropic's does. Errors come in
Anthropic's shape (``status=529`` is ``overloaded_error``). Streams send ``message_start``
(input and cache counts, ``output_tokens: 1``), the blocks, then ``message_delta`` with the
cumulative output and ``message_stop``; ``cut_after=N`` drops the connection after N delta
events.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from gateway.mock.events import sse, stream
from gateway.mock.script import Reject, ScriptedReply, begin, json_response

THINKING = ("Let", " me", " think.")
TOOL_INPUT = ('{"query": ', '"mock"}')
TOOL_TOKENS = 5
RESULT_TOKENS = 100
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def error_response(status: int, message: str) -> web.Response:
    kind = ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return json_response({"type": "error", "error": {"type": kind, "message": message}}, status)


def _prompt(body: dict[str, Any]) -> list[Any]:
    return [body.get("system"), body.get("messages")]


def usage(reply: ScriptedReply, output: int, searches: int = 0) -> dict[str, Any]:
    total = reply.prompt_tokens + searches * RESULT_TOKENS
    reads = min(reply.mock.cached, total)
    five = min(reply.mock.cache_write, total - reads)
    hour = min(reply.mock.cache_write_hour, total - reads - five)
    return {
        "input_tokens": total - reads - five - hour,
        "cache_creation_input_tokens": five + hour,
        "cache_read_input_tokens": reads,
        "cache_creation": {"ephemeral_5m_input_tokens": five, "ephemeral_1h_input_tokens": hour},
        "output_tokens": output,
        "server_tool_use": {"web_search_requests": searches},
        "service_tier": "standard",
    }


def _searches(reply: ScriptedReply) -> int:
    tools = reply.body.get("tools")
    search = next(
        (
            t
            for t in tools or ()
            if isinstance(t, dict) and str(t.get("type", "")).startswith("web_search_")
        ),
        None,
    )
    if search is None:
        return 0
    wanted = 1 if reply.mock.web_searches is None else reply.mock.web_searches
    most = search.get("max_uses")
    return min(wanted, most) if isinstance(most, int) else wanted


def _search_blocks(reply: ScriptedReply, n: int) -> list[tuple[dict[str, Any], str, list[str]]]:
    blocks: list[tuple[dict[str, Any], str, list[str]]] = []
    for i in range(n):
        call = {"type": "server_tool_use", "id": f"srvtoolu_{i}_{reply.uid[:16]}"}
        blocks.append(
            ({**call, "name": "web_search", "input": {}}, "partial_json", list(TOOL_INPUT))
        )
        result = {
            "type": "web_search_result",
            "url": f"https://example.com/{i}",
            "title": f"Result {i}",
            "encrypted_content": "mock",
            "page_age": None,
        }
        found = {"type": "web_search_tool_result", "tool_use_id": call["id"], "content": [result]}
        blocks.append((found, "", []))
    return blocks


def _wants_tool(body: dict[str, Any]) -> dict[str, Any] | None:
    tools = [
        t
        for t in body.get("tools") or ()
        if isinstance(t, dict) and not str(t.get("type", "")).startswith("web_search_")
    ]
    if not tools:
        return None
    messages = body.get("messages")
    last = messages[-1] if isinstance(messages, list) and messages else None
    content = last.get("content") if isinstance(last, dict) else None
    if isinstance(content, list) and any(
        isinstance(b, dict) and b.get("type") == "tool_result" for b in content
    ):
        return None
    return tools[0]


def _blocks(reply: ScriptedReply) -> list[tuple[dict[str, Any], str, list[str]]]:
    """(empty block, delta field, pieces) per content block of the answer."""
    blocks: list[tuple[dict[str, Any], str, list[str]]] = []
    thinking = reply.body.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") == "enabled":
        blocks.append(({"type": "thinking", "thinking": "", "signature": ""}, "thinking", []))
        blocks[-1][2].extend(THINKING)
    blocks.extend(_search_blocks(reply, _searches(reply)))
    tool = _wants_tool(reply.body)
    if tool is not None:
        block = {"type": "tool_use", "id": f"toolu_{reply.uid[:24]}", "name": tool.get("name")}
        blocks.append(({**block, "input": {}}, "partial_json", list(TOOL_INPUT)))
    else:
        blocks.append(({"type": "text", "text": ""}, "text", list(reply.pieces)))
    return blocks


def _output(blocks: list[tuple[dict[str, Any], str, list[str]]]) -> int:
    return sum(
        TOOL_TOKENS if field == "partial_json" else len(pieces) for _, field, pieces in blocks
    )


def _whole(block: dict[str, Any], field: str, pieces: list[str]) -> dict[str, Any]:
    text = "".join(pieces)
    if not field:
        return block
    if field == "partial_json":
        return {**block, "input": orjson.loads(text)}
    if field == "thinking":
        return {**block, "thinking": text, "signature": "mock-signature"}
    return {**block, "text": text}


def _message(reply: ScriptedReply, content: list[Any], stop: str | None, use: Any) -> Any:
    return {
        "id": f"msg_{reply.uid}",
        "type": "message",
        "role": "assistant",
        "model": reply.model,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": use,
    }


def _delta(field: str, piece: str) -> dict[str, Any]:
    kinds = {"text": "text_delta", "thinking": "thinking_delta", "partial_json": "input_json_delta"}
    return {"type": kinds[field], field: piece}


def _defined_tools(body: dict[str, Any]) -> int:
    tools = [t for t in body.get("tools") or () if isinstance(t, dict) and "input_schema" in t]
    return len(orjson.dumps(tools)) // 4 if tools else 0


async def _begin(request: web.Request, body: Any) -> ScriptedReply:
    reply = await begin(request, body, _prompt)
    reply.prompt_tokens += _defined_tools(reply.body)
    return reply


async def messages(request: web.Request, body: Any) -> web.StreamResponse:
    try:
        reply = await _begin(request, body)
    except Reject as exc:
        return error_response(exc.status, exc.message)
    blocks = _blocks(reply)
    output = _output(blocks)
    searches = _searches(reply)
    stop = "tool_use" if blocks[-1][1] == "partial_json" else "end_turn"
    if not reply.body.get("stream"):
        content = [_whole(*b) for b in blocks]
        use = None if reply.mock.no_usage else usage(reply, output, searches)
        return json_response(_message(reply, content, stop, use))

    def event(kind: str, **fields: Any) -> bytes:
        return sse({"type": kind, **fields}, event=kind)

    start = _message(reply, [], None, usage(reply, 1))
    head = [event("message_start", message=start), event("ping")]
    events: list[bytes] = []
    for index, (block, field, pieces) in enumerate(blocks):
        events.append(event("content_block_start", index=index, content_block=block))
        events.extend(
            event("content_block_delta", index=index, delta=_delta(field, p)) for p in pieces
        )
        if field == "thinking":
            signature = {"type": "signature_delta", "signature": "mock-signature"}
            events.append(event("content_block_delta", index=index, delta=signature))
        events.append(event("content_block_stop", index=index))
    final = usage(reply, output, searches)
    grown = {k: final[k] for k in ("input_tokens", "server_tool_use")} if searches else {}
    tail = [
        event(
            "message_delta",
            delta={"stop_reason": stop, "stop_sequence": None},
            usage={**grown, "output_tokens": output},
        ),
        event("message_stop"),
    ]
    return await stream(request, reply, head, events, tail)


async def count_tokens(request: web.Request, body: Any) -> web.StreamResponse:
    try:
        reply = await _begin(request, body)
    except Reject as exc:
        return error_response(exc.status, exc.message)
    return json_response({"input_tokens": reply.prompt_tokens})
