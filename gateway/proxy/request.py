"""Reading and checking a proxied request: body, JSON object."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.types import Receive

from gateway.auth import bearer
from gateway.endpoints import Endpoint
from gateway.errors import BadRequest, PayloadTooLarge, Unauthorized


def header(headers: dict[bytes, bytes], name: bytes) -> str | None:
    value = headers.get(name)
    return value.decode("latin-1") if value is not None else None


def caller_key(headers: dict[bytes, bytes], endpoint: Endpoint) -> str | None:
    """The ``Authorization`` header carrying the caller's key: as sent, else made from the
    first of the endpoint's ``key_headers`` that carries the key bare (``x-api-key``).

    Raises Unauthorized when a bare key and a Bearer key name different keys (which one
    pays would be a guess), or, on an endpoint with ``key_headers``, when neither is sent
    (naming every header the key may come in)."""
    found = header(headers, b"authorization")
    for name in endpoint.key_headers:
        bare = header(headers, name)
        if not bare:
            continue
        sent = bearer(found)
        if sent is None:
            return f"Bearer {bare.strip()}"
        if sent != bare.strip():
            raise Unauthorized(
                f"Two different API keys: {name.decode()} and Authorization name different "
                "keys. Send one of them."
            )
    if found is None and endpoint.key_headers:
        where = " or ".join(f"'{n.decode()}: <key>'" for n in endpoint.key_headers)
        raise Unauthorized(
            f"You didn't provide an API key. Send it as {where} or 'Authorization: Bearer <key>'."
        )
    return found


def passed_headers(headers: dict[bytes, bytes], endpoint: Endpoint) -> tuple[tuple[str, str], ...]:
    """The request headers the endpoint forwards upstream, each as sent or its default."""
    out = []
    for name, default in endpoint.passed_headers:
        value = header(headers, name.encode())
        if value is None:
            value = default
        if value is not None:
            out.append((name, value))
    return tuple(out)


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
