"""The mock upstream's Anthropic Messages API: POST /v1/messages (whole and streamed, with
Anthropic's events) and POST /v1/messages/count_tokens.

Same token rule and directives as the OpenAI side (``gateway.mock.upstream``): prompt tokens =
words in ``system`` and the messages' text (tool results included), ``stored`` more;
``cached=N`` of them are cache reads, ``cache_write=N`` written at the 5-minute TTL and
``cache_write_hour=N`` at the 1-hour TTL, the rest is ``input_tokens`` (Anthropic counts cache
reads and writes beside it). Output tokens = reply pieces, plus the thinking pieces when the
request enables ``thinking``. A request with ``tools`` whose last message carries no
``tool_result`` is answered with a ``tool_use`` of the first tool (input ``{"query":
"mock"}``, ``TOOL_TOKENS`` output tokens) and ``stop_reason: tool_use``. Errors come in
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


def usage(reply: ScriptedReply, output: int) -> dict[str, Any]:
    total = reply.prompt_tokens
    reads = min(reply.mock.cached, total)
    five = min(reply.mock.cache_write, total - reads)
    hour = min(reply.mock.cache_write_hour, total - reads - five)
    return {
        "input_tokens": total - reads - five - hour,
        "cache_creation_input_tokens": five + hour,
        "cache_read_input_tokens": reads,
        "cache_creation": {"ephemeral_5m_input_tokens": five, "ephemeral_1h_input_tokens": hour},
        "output_tokens": output,
        "service_tier": "standard",
    }


def _wants_tool(body: dict[str, Any]) -> dict[str, Any] | None:
    tools = body.get("tools")
    if not isinstance(tools, list) or not tools or not isinstance(tools[0], dict):
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


async def messages(request: web.Request, body: Any) -> web.StreamResponse:
    try:
        reply = await begin(request, body, _prompt)
    except Reject as exc:
        return error_response(exc.status, exc.message)
    blocks = _blocks(reply)
    output = _output(blocks)
    stop = "tool_use" if blocks[-1][1] == "partial_json" else "end_turn"
    if not reply.body.get("stream"):
        content = [_whole(*b) for b in blocks]
        use = None if reply.mock.no_usage else usage(reply, output)
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
    tail = [
        event(
            "message_delta",
            delta={"stop_reason": stop, "stop_sequence": None},
            usage={"output_tokens": output},
        ),
        event("message_stop"),
    ]
    return await stream(request, reply, head, events, tail)


async def count_tokens(request: web.Request, body: Any) -> web.StreamResponse:
    try:
        reply = await begin(request, body, _prompt)
    except Reject as exc:
        return error_response(exc.status, exc.message)
    return json_response({"input_tokens": reply.prompt_tokens})
