"""Reading and checking a proxied request: body, JSON object, the 402 message."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.types import Receive

from gateway.catalog import Model
from gateway.errors import BadRequest, PayloadTooLarge
from gateway.money import format_usd
from gateway.pricing import Quote, affordable_output


def header(headers: dict[bytes, bytes], name: bytes) -> str | None:
    value = headers.get(name)
    return value.decode("latin-1") if value is not None else None


async def read_body(receive: Receive, headers: dict[bytes, bytes], limit: int) -> bytes:
    declared = headers.get(b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body is larger than the {limit} byte limit")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise BadRequest("client disconnected before sending the whole body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body is larger than the {limit} byte limit")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def parse_object(body: bytes) -> dict[str, Any]:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(
            f"We could not parse the JSON body of your request: {exc}", code="invalid_json"
        ) from exc
    if not isinstance(payload, dict):
        raise BadRequest("The request body must be a JSON object.", code="invalid_json")
    return payload


def insufficient_message(model: Model, quote: Quote, available: int) -> str:
    """The 402 text: what the call may cost against what is available, and what would fit."""
    head = (
        f"Insufficient credit: this call to {model.name} may cost up to "
        f"${format_usd(quote.reserve)} ({quote.prompt_tokens} prompt tokens + up to "
        f"{quote.cap} output tokens) but ${format_usd(max(available, 0))} is available."
    )
    most = affordable_output(model.price, quote.prompt_tokens, available)
    if model.kind == "embedding" or most < 0:
        return head + " Shorten the input or top up your balance."
    if most == 0:
        return head + " The prompt alone uses what is left; top up your balance."
    return head + f" Set max_tokens to {most} or less, or top up your balance."
