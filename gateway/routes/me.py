"""The caller's own view, authenticated by their gateway key: GET /me, /me/usage, /me/stats."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway import reports
from gateway.records import ApiKey
from gateway.routes.my_keys import my_key_routes
from gateway.services import Services
from gateway.views import caller_view
from gateway.web import json_response, services_of


def caller_routes() -> list[Route]:
    return [
        Route("/me", me, methods=["GET"]),
        Route("/me/usage", my_usage, methods=["GET"]),
        Route("/me/stats", my_stats, methods=["GET"]),
        *my_key_routes(),
    ]


async def _caller(request: Request) -> tuple[Services, ApiKey]:
    services = services_of(request)
    key = await services.auth.authenticate(request.headers.get("authorization"))
    return services, key


async def me(request: Request) -> Response:
    services, key = await _caller(request)
    snapshot = await services.store.snapshot(key.user_id)
    balance, reserved = snapshot if snapshot is not None else (0, 0)
    return json_response(caller_view(key, balance, reserved))


# The same services and parameters as the admin views of this user: a user sees exactly what
# the operator sees about them.
async def my_usage(request: Request) -> Response:
    services, key = await _caller(request)
    return json_response(
        await reports.usage_page(services.ledger, key.user_id, dict(request.query_params))
    )


async def my_stats(request: Request) -> Response:
    services, key = await _caller(request)
    return json_response(
        await reports.stats(services.ledger, key.user_id, dict(request.query_params))
    )
