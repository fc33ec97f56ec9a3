"""Small HTTP helpers shared by the non-proxy routes: the services, JSON in and out, paging.

Handlers are module-level functions that find the services on ``request.app.state`` (set in
the lifespan) and raise ``GatewayError``; the app-level exception handler renders it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway.errors import BadRequest, GatewayError, Unprocessable

if TYPE_CHECKING:
    from gateway.services import Services


def services_of(request: Request) -> Services:
    """The services the lifespan built for the app that serves ``request``."""
    services: Services = request.app.state.services
    return services


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


def optional_str(data: Mapping[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise Unprocessable(f"{name} must be a string", param=name)
    return value
