"""Reading and checking a proxied request: body, JSON object, output cap, the 402 message."""

from __future__ import annotations

import orjson
from starlette.types import Receive

from gateway.catalog import Model
from gateway.endpoints import Endpoint
from gateway.errors import BadRequest, PayloadTooLarge
from gateway.money import format_usd
from gateway.pricing import affordable_output


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


def parse_object(body: bytes) -> dict:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(
            f"We could not parse the JSON body of your request: {exc}", code="invalid_json"
        ) from exc
    if not isinstance(payload, dict):
        raise BadRequest("The request body must be a JSON object.", code="invalid_json")
    return payload


def output_cap(endpoint: Endpoint, payload: dict, model: Model) -> int:
    """The most output tokens this request may be billed for (0: the endpoint produces none)."""
    if not endpoint.cap_fields:
        return 0
    cap = model.max_output_tokens
    for name in endpoint.cap_fields:
        value = payload.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise BadRequest(f"{name} must be a positive integer", param=name, code="invalid_value")
        cap = min(value, cap)
        break
    choices = 1
    for name in ("n", "best_of"):
        value = payload.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 128:
            raise BadRequest(
                f"{name} must be an integer between 1 and 128", param=name, code="invalid_value"
            )
        choices = max(choices, value)
    return cap * choices


def insufficient_message(model: Model, prompt: int, cap: int, reserve: int, available: int) -> str:
    head = (
        f"Insufficient credit: this call to {model.name} may cost up to "
        f"${format_usd(reserve)} ({prompt} prompt tokens + up to {cap} output tokens) but "
        f"${format_usd(max(available, 0))} is available."
    )
    most = affordable_output(model.price, prompt, available)
    if model.kind == "embedding" or most < 0:
        return head + " Shorten the input or top up your balance."
    if most == 0:
        return head + " The prompt alone uses what is left; top up your balance."
    return head + f" Set max_tokens to {most} or less, or top up your balance."
