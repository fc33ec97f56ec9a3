"""Small HTTP helpers shared by the non-proxy routes: JSON in and out, errors, paging."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway.errors import BadRequest, GatewayError, Unprocessable
from gateway.money import format_usd
from gateway.records import UsageRecord


def json_response(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def error_response(exc: GatewayError) -> Response:
    return Response(exc.body(), status_code=exc.status, media_type="application/json")


async def read_json(request: Request) -> dict[str, Any]:
    """An admin/user body: numbers parsed as Decimal so amounts never pass through a float."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw, parse_float=Decimal, parse_constant=_refuse_constant)
    except ValueError as exc:
        raise BadRequest(
            f"We could not parse the JSON body of your request: {exc}", code="invalid_json"
        ) from exc
    if not isinstance(data, dict):
        raise BadRequest("The request body must be a JSON object.", code="invalid_json")
    return data


def _refuse_constant(name: str) -> Any:
    raise Unprocessable(f"{name} is not a valid amount", code="invalid_amount")


def page(request: Request, *, default: int = 50, maximum: int = 1000) -> tuple[int, int]:
    return (
        _int_param(request, "limit", default, 1, maximum),
        _int_param(request, "offset", 0, 0, 10**9),
    )


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise BadRequest(f"{name} must be an integer between {low} and {high}", param=name)
    return int(raw)


def optional_str(data: dict[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise Unprocessable(f"{name} must be a string", param=name)
    return value


def usage_view(r: UsageRecord) -> dict[str, Any]:
    return {
        "request_id": r.request_id,
        "key_id": r.key_id,
        "model": r.model,
        "provider": r.provider,
        "endpoint": r.endpoint,
        "prompt_tokens": r.prompt_tokens,
        "cached_tokens": r.cached_tokens,
        "completion_tokens": r.completion_tokens,
        "reasoning_tokens": r.reasoning_tokens,
        "price_per_1m_tokens": {
            "input": format_usd(r.price_input),
            "cached_input": None
            if r.price_cached_input is None
            else format_usd(r.price_cached_input),
            "output": format_usd(r.price_output),
        },
        "cost": format_usd(r.cost),
        "status": r.status,
        "usage_source": r.usage_source,
        "latency_ms": r.latency_ms,
        "created_at": r.created_at.isoformat(),
    }


Handler = Callable[[Request], Awaitable[Response]]


def guarded(handler: Handler) -> Handler:
    """Renders GatewayError in OpenAI's shape, with the request id header."""

    async def run(request: Request) -> Response:
        try:
            return await handler(request)
        except GatewayError as exc:
            return error_response(exc)

    run.__name__ = handler.__name__
    return run
