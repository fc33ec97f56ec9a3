"""The caller's own view, authenticated by their gateway key."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.admin import reports
from gateway.money import format_usd
from gateway.records import ApiKey
from gateway.services import Services
from gateway.web import guarded, json_response


def routes(services: Services) -> list[Route]:
    async def caller(request: Request) -> ApiKey:
        return await services.auth.authenticate(request.headers.get("authorization"))

    @guarded
    async def me(request: Request) -> Response:
        key = await caller(request)
        snapshot = await services.store.snapshot(key.user_id)
        balance, reserved = snapshot if snapshot is not None else (0, 0)
        return json_response(
            {
                "user_id": key.user_id,
                "balance": format_usd(balance),
                "reserved": format_usd(reserved),
                "key": {"id": key.id, "prefix": key.prefix, "name": key.name},
            }
        )

    # The same services and parameters as the admin views of this user: a user sees exactly
    # what the operator sees about them.
    @guarded
    async def my_usage(request: Request) -> Response:
        key = await caller(request)
        return json_response(
            await reports.usage_page(services.ledger, key.user_id, dict(request.query_params))
        )

    @guarded
    async def my_stats(request: Request) -> Response:
        key = await caller(request)
        return json_response(
            await reports.stats(services.ledger, key.user_id, dict(request.query_params))
        )

    return [
        Route("/me", me, methods=["GET"]),
        Route("/me/usage", my_usage, methods=["GET"]),
        Route("/me/stats", my_stats, methods=["GET"]),
    ]
