"""Writing whole responses on the raw ASGI send (the proxy bypasses Starlette's Response)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from starlette.types import Send

from gateway.errors import GatewayError
from gateway.listeners import Header
from gateway.proxy.anthropic_errors import reshape


async def send_body(
    send: Send,
    status: int,
    body: bytes,
    content_type: str,
    request_id: str,
    extra: Sequence[Header] = (),
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type.encode("latin-1")),
                (b"content-length", str(len(body)).encode()),
                (b"x-request-id", request_id.encode()),
                *extra,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def send_error(
    send: Send,
    exc: GatewayError,
    request_id: str,
    anthropic_types: Mapping[int, str] | None = None,
) -> None:
    """Sends ``exc`` in OpenAI's shape, or Anthropic's with ``anthropic_types`` (an endpoint's
    ``error_types``)."""
    body = exc.body()
    if anthropic_types is not None:
        body = reshape(anthropic_types, exc.status, body)
    await send_body(send, exc.status, body, "application/json", request_id, exc.headers)
