"""Produced text out of OpenAI-shaped answers, per choice (pure).

Usage itself is read by ``gateway.usage_dialects.normalize`` (every provider's shape); this
module finds what was generated, for the calls whose output has to be counted locally: each
choice's text is kept apart, because ``n`` choices are ``n`` separate generations, and
tokenizing their interleaved stream deltas as one string would miscount them
(vllm-project/vllm#9475).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any, TypeGuard

import orjson

from gateway.usage_shapes import NormalizedUsage

# One piece of generated text and the choice (or Responses output item) it belongs to.
Piece = tuple[int, str]


def output_pieces(obj: Any) -> list[Piece]:
    """Every piece of generated text in a full response, a stream chunk or a stream event,
    with its choice index (``choices[].index``, or the Responses ``output_index``)."""
    out: list[Piece] = []
    if not isinstance(obj, dict):
        return out
    choices = obj.get("choices")
    if isinstance(choices, list):
        for position, choice in enumerate(choices):
            if not isinstance(choice, dict):
                continue
            index = _index(choice.get("index"), position)
            text = choice.get("text")
            if isinstance(text, str):
                out.append((index, text))
            for key in ("message", "delta"):
                part = choice.get(key)
                if isinstance(part, dict):
                    out.extend((index, t) for t in _message_text(part))
        return out
    if _anthropic_pieces(obj, out):
        return out
    # Responses API: a stream event like response.output_text.delta, or a full response
    delta = obj.get("delta")
    if isinstance(delta, str) and str(obj.get("type", "")).endswith(".delta"):
        out.append((_index(obj.get("output_index"), 0), delta))
    output = obj.get("output")
    if isinstance(output, list):
        for position, item in enumerate(output):
            if not isinstance(item, dict):
                continue
            for key in ("arguments", "text"):
                if isinstance(item.get(key), str):
                    out.append((position, item[key]))
            content = item.get("content")
            if isinstance(content, list):
                for part in content:
                    if isinstance(part, dict) and isinstance(part.get("text"), str):
                        out.append((position, part["text"]))
    return out


# The generated text of Anthropic's content blocks and stream deltas, by field.
_BLOCK_TEXT = ("text", "thinking", "partial_json")


def _anthropic_pieces(obj: dict[str, Any], out: list[Piece]) -> bool:
    """Anthropic's Messages API: a whole message's content blocks, or a stream's
    ``content_block_delta`` (text, thinking, a tool call's input JSON), one answer (choice 0).
    True when ``obj`` is one of these."""
    kind = obj.get("type")
    if kind == "content_block_delta":
        delta = obj.get("delta")
        if isinstance(delta, dict):
            out.extend((0, delta[k]) for k in _BLOCK_TEXT if isinstance(delta.get(k), str))
        return True
    if kind != "message" or not isinstance(obj.get("content"), list):
        return False
    for block in obj["content"]:
        if not isinstance(block, dict):
            continue
        out.extend((0, block[k]) for k in _BLOCK_TEXT if isinstance(block.get(k), str))
        if block.get("type") == "tool_use" and "input" in block:
            out.append((0, orjson.dumps(block["input"]).decode()))
    return True


def web_searches(obj: Any) -> int:
    """Anthropic web searches an answer shows it made: ``server_tool_use`` blocks named
    ``web_search`` in a whole message, or a stream's ``content_block_start`` of one
    (docs.anthropic.com, "Web search tool"). Counted only when usage does not report them."""
    if not isinstance(obj, dict):
        return 0
    kind = obj.get("type")
    if kind == "content_block_start":
        blocks = [obj.get("content_block")]
    elif kind == "message" and isinstance(obj.get("content"), list):
        blocks = obj["content"]
    else:
        return 0
    return sum(
        1
        for b in blocks
        if isinstance(b, dict)
        and b.get("type") == "server_tool_use"
        and b.get("name") == "web_search"
    )


# A Responses stream shows each output item twice, when it starts and when it is done
# (developers.openai.com/api/reference/resources/responses/streaming-events).
_ITEM_EVENTS = frozenset(("response.output_item.added", "response.output_item.done"))


def search_calls(obj: Any) -> list[str]:
    """OpenAI Responses web searches an answer shows, one key per ``web_search_call`` output
    item (its ``id``, else ``#<output index>``), so that the same call seen in several
    events counts once: the ``output`` of a whole response, the ``response.output`` of a
    stream's terminal event, or the ``item`` of a ``response.output_item.added`` / ``.done``
    event. OpenAI bills each call ($10 per 1,000, developers.openai.com/api/docs/pricing) and
    its usage does not count them: these items are the only count there is."""
    if not isinstance(obj, dict):
        return []
    kind = obj.get("type")
    if kind in _ITEM_EVENTS:
        item = obj.get("item")
        at = obj.get("output_index")
        return [_call_key(item, at)] if _is_search(item) else []
    response = obj if obj.get("object") == "response" else obj.get("response")
    output = response.get("output") if isinstance(response, dict) else None
    if not isinstance(output, list):
        return []
    return [_call_key(item, i) for i, item in enumerate(output) if _is_search(item)]


def with_searches(found: NormalizedUsage | None, obj: Any) -> NormalizedUsage | None:
    """``found`` (the usage read from ``obj``, a whole answer or a stream's terminal event)
    with the Responses web searches ``obj`` shows (``search_calls``) when it counts fewer;
    a usage of that count alone when ``obj`` reported none. Unchanged for any other shape."""
    searches = len(set(search_calls(obj)))
    if not searches:
        return found
    if found is None:
        return NormalizedUsage(web_search_requests=searches)
    if searches <= (found.web_search_requests or 0):
        return found
    return replace(found, web_search_requests=searches)


def _is_search(item: Any) -> TypeGuard[dict[str, Any]]:
    return isinstance(item, dict) and item.get("type") == "web_search_call"


def _call_key(item: dict[str, Any], index: Any) -> str:
    ident = item.get("id")
    return ident if isinstance(ident, str) and ident else f"#{index}"


def by_choice(pieces: Iterable[Piece]) -> list[str]:
    """The text of each choice, pieces joined in arrival order, in choice order."""
    texts: dict[int, list[str]] = {}
    for index, text in pieces:
        texts.setdefault(index, []).append(text)
    return ["".join(texts[i]) for i in sorted(texts)]


def _index(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _message_text(message: dict[str, Any]) -> list[str]:
    out: list[str] = []
    # reasoning_content: DeepSeek, vLLM; reasoning: OpenRouter, Ollama /v1
    for key in ("content", "reasoning_content", "reasoning", "refusal"):
        value = message.get(key)
        if isinstance(value, str):
            out.append(value)
    calls = message.get("tool_calls")
    if isinstance(calls, list):
        for call in calls:
            fn = call.get("function") if isinstance(call, dict) else None
            if isinstance(fn, dict):
                for key in ("name", "arguments"):
                    if isinstance(fn.get(key), str):
                        out.append(fn[key])
    return out
