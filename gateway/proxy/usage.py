"""Reading usage and produced text out of OpenAI response objects (pure).

Unknown usage stays ``None``; it is never read as zero.
"""

from __future__ import annotations

from typing import Any

from gateway.endpoints import UsageShape
from gateway.pricing import Usage


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def usage_from(obj: Any, shape: UsageShape) -> Usage | None:
    """The usage object of an answer, chunk or Responses ``response`` object, read under the
    endpoint's names; None when absent or not an object."""
    if not isinstance(obj, dict):
        return None
    usage = obj.get("usage")
    if not isinstance(usage, dict):
        return None
    details_in = usage.get(shape.prompt_details) or {}
    details_out = usage.get(shape.completion_details) or {}
    return Usage(
        prompt_tokens=_int(usage.get(shape.prompt)),
        completion_tokens=_int(usage.get(shape.completion)),
        cached_tokens=_int(details_in.get("cached_tokens")) if isinstance(details_in, dict) else 0,
        reasoning_tokens=_int(details_out.get("reasoning_tokens"))
        if isinstance(details_out, dict)
        else 0,
    )


def output_text(obj: Any) -> list[str]:
    """Every piece of generated text in a full response, a stream chunk or a stream event."""
    out: list[str] = []
    if not isinstance(obj, dict):
        return out
    choices = obj.get("choices")
    if isinstance(choices, list):
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            text = choice.get("text")
            if isinstance(text, str):
                out.append(text)
            for key in ("message", "delta"):
                part = choice.get(key)
                if isinstance(part, dict):
                    _message_text(part, out)
        return out
    # Responses API: a full response, or a stream event like response.output_text.delta
    delta = obj.get("delta")
    if isinstance(delta, str) and str(obj.get("type", "")).endswith(".delta"):
        out.append(delta)
    output = obj.get("output")
    if isinstance(output, list):
        for item in output:
            if not isinstance(item, dict):
                continue
            for key in ("arguments", "text"):
                if isinstance(item.get(key), str):
                    out.append(item[key])
            content = item.get("content")
            if isinstance(content, list):
                for part in content:
                    if isinstance(part, dict) and isinstance(part.get("text"), str):
                        out.append(part["text"])
    return out


def _message_text(message: dict[str, Any], out: list[str]) -> None:
    for key in ("content", "reasoning_content", "refusal"):
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
