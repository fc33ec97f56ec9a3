"""The caller's own view, authenticated by their gateway key."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.ledger.base import ApiKey
from gateway.money import format_usd
from gateway.services import Services
from gateway.web import guarded, json_response, page, usage_view


def routes(services: Services) -> list[Route]:
    async def caller(request: Request) -> ApiKey:
        return await services.auth.authenticate(request.headers.get("authorization"))

    @guarded
    async def me(request: Request) -> Response:
        key = await caller(request)
        snapshot = await services.store.snapshot(key.user_id)
        balance, reserved = snapshot if snapshot is not None else (0, 0)
        return json_response({
            "user_id": key.user_id,
            "balance": format_usd(balance),
            "reserved": format_usd(reserved),
            "key": {"id": key.id, "prefix": key.prefix, "name": key.name},
        })

    @guarded
    async def my_usage(request: Request) -> Response:
        key = await caller(request)
        limit, offset = page(request)
        rows, more = await services.ledger.list_usage(key.user_id, limit=limit, offset=offset)
        return json_response({"data": [usage_view(r) for r in rows], "has_more": more})

    return [
        Route("/me", me, methods=["GET"]),
        Route("/me/usage", my_usage, methods=["GET"]),
    ]
