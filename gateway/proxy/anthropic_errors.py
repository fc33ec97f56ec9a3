"""Errors in Anthropic's shape, for the endpoints that speak its API (pure).

The gateway's own errors (``gateway.errors``) and an upstream's non-Anthropic error bodies
render in OpenAI's shape; an endpoint with ``error_types`` (``gateway.endpoints``) gets them as
Anthropic's clients expect (docs.anthropic.com/en/api/errors)::

    {"type": "error", "error": {"type": "billing_error", "message": "..."}}

so that the ``anthropic`` SDK raises its class for the status and shows the message. An
upstream error already in that shape (Anthropic's own 429, 529 ...) passes unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson


def error_type(types: Mapping[int, str], status: int) -> str:
    """The Anthropic error type of ``status``: listed, else by its class."""
    found = types.get(status)
    if found is not None:
        return found
    return "api_error" if status >= 500 else "invalid_request_error"


def reshape(types: Mapping[int, str], status: int, body: bytes) -> bytes:
    """``body``, an error answer sent with ``status``, in Anthropic's shape."""
    try:
        obj: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        obj = None
    if isinstance(obj, dict) and obj.get("type") == "error" and isinstance(obj.get("error"), dict):
        return body
    message = None
    if isinstance(obj, dict):
        inner = obj.get("error")
        message = inner.get("message") if isinstance(inner, dict) else inner
    if not isinstance(message, str) or not message:
        message = f"the gateway answered HTTP {status}"
    return orjson.dumps(
        {"type": "error", "error": {"type": error_type(types, status), "message": message}}
    )
