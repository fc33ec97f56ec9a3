"""Admin routes: thin translation between HTTP and gateway.accounts (Bearer GATEWAY_ADMIN_KEY)."""

from __future__ import annotations

import hmac

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.accounts import Accounts, entry_view
from gateway.auth import bearer
from gateway.catalog import describe
from gateway.errors import Forbidden, Unauthorized
from gateway.services import Services
from gateway.web import guarded, json_response, optional_str, page, read_json, usage_view

ACTOR = "admin"


def routes(services: Services) -> list[Route]:
    accounts = Accounts(services.ledger, services.store, services.auth)

    def admin(handler):  # type: ignore[no-untyped-def]
        async def checked(request: Request) -> Response:
            expected = services.settings.admin_key
            token = bearer(request.headers.get("authorization"))
            if token is None:
                raise Unauthorized("admin endpoints need 'Authorization: Bearer <admin key>'")
            if expected is None:
                raise Forbidden("the admin API is disabled: GATEWAY_ADMIN_KEY is not set")
            if not hmac.compare_digest(token.encode(), expected.encode()):
                raise Forbidden("this key may not use the admin API")
            return await handler(request)

        checked.__name__ = handler.__name__
        return guarded(checked)

    @admin
    async def create_user(request: Request) -> Response:
        data = await read_json(request)
        user = await accounts.create_user(
            user_id=optional_str(data, "id"), email=optional_str(data, "email"),
            initial_credit=data.get("initial_credit"), actor=ACTOR,
        )
        return json_response(await accounts.user_view(user), 201)

    @admin
    async def get_user(request: Request) -> Response:
        user = await accounts.require_user(request.path_params["user_id"])
        return json_response(await accounts.user_view(user))

    @admin
    async def create_key(request: Request) -> Response:
        data = await read_json(request)
        fresh, record = await accounts.create_key(
            request.path_params["user_id"], name=optional_str(data, "name"), actor=ACTOR
        )
        return json_response({"id": fresh.id, "key": fresh.key, "prefix": fresh.prefix,
                              "name": record.name, "user_id": record.user_id}, 201)

    @admin
    async def list_keys(request: Request) -> Response:
        user = await accounts.require_user(request.path_params["user_id"])
        keys = await services.ledger.list_keys(user.id)
        return json_response({"data": [key_view(k) for k in keys], "has_more": False})

    @admin
    async def revoke_key(request: Request) -> Response:
        key = await accounts.revoke_key(request.path_params["key_id"], actor=ACTOR)
        return json_response(key_view(key))

    @admin
    async def add_credits(request: Request) -> Response:
        data = await read_json(request)
        entry = await accounts.add_credit(
            request.path_params["user_id"], data.get("amount"),
            reason=optional_str(data, "reason"), actor=ACTOR,
        )
        user = await accounts.require_user(request.path_params["user_id"])
        return json_response({"entry": entry_view(entry), "user": await accounts.user_view(user)})

    @admin
    async def user_usage(request: Request) -> Response:
        user = await accounts.require_user(request.path_params["user_id"])
        limit, offset = page(request)
        rows, more = await services.ledger.list_usage(user.id, limit=limit, offset=offset)
        return json_response({"data": [usage_view(r) for r in rows], "has_more": more})

    @admin
    async def models(request: Request) -> Response:
        return json_response({"data": [describe(m) for m in services.catalog.models.values()],
                              "has_more": False})

    return [
        Route("/admin/users", create_user, methods=["POST"]),
        Route("/admin/users/{user_id}", get_user, methods=["GET"]),
        Route("/admin/users/{user_id}/keys", create_key, methods=["POST"]),
        Route("/admin/users/{user_id}/keys", list_keys, methods=["GET"]),
        Route("/admin/keys/{key_id}", revoke_key, methods=["DELETE"]),
        Route("/admin/users/{user_id}/credits", add_credits, methods=["POST"]),
        Route("/admin/users/{user_id}/usage", user_usage, methods=["GET"]),
        Route("/admin/models", models, methods=["GET"]),
    ]


def key_view(key) -> dict:  # type: ignore[no-untyped-def]
    return {
        "id": key.id,
        "user_id": key.user_id,
        "prefix": key.prefix,
        "name": key.name,
        "created_at": key.created_at.isoformat(),
        "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
    }
