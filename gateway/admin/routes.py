"""Admin routes: thin translation between HTTP and the services (Bearer GATEWAY_ADMIN_KEY).

Accounts (gateway/accounts.py) moves money, gateway/admin/reports.py answers usage, stats,
reports and audit queries, gateway/prices.py reloads prices. The CLI's --direct mode calls the
same functions with the same parameters, so both give the same answers.

The admin key is shared; an ``X-Gateway-Actor`` header (e.g. the operator's login, sent by the
CLI) is recorded in the audit trail as ``admin:<name>``.
"""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway import prices
from gateway.accounts import (
    Accounts,
    bulk_view,
    key_view,
    money_view,
    new_key_view,
)
from gateway.admin import reports
from gateway.auth import check_admin
from gateway.services import Services
from gateway.web import Handler, guarded, json_response, optional_str, read_json

ACTOR = "admin"
_ACTOR_NAME = re.compile(r"^[A-Za-z0-9_.@:-]{1,64}$")


def actor_of(request: Request) -> str:
    name = request.headers.get("x-gateway-actor")
    return f"{ACTOR}:{name}" if name and _ACTOR_NAME.match(name) else ACTOR


def routes(services: Services) -> list[Route]:
    accounts = Accounts(services.ledger, services.store, services.auth)

    def admin(handler: Handler) -> Handler:
        async def checked(request: Request) -> Response:
            check_admin(services.settings.admin_key, request.headers.get("authorization"))
            return await handler(request)

        checked.__name__ = handler.__name__
        return guarded(checked)

    def query(request: Request) -> dict[str, str]:
        return dict(request.query_params)

    # -- users and keys ---------------------------------------------------------------------

    @admin
    async def create_user(request: Request) -> Response:
        data = await read_json(request)
        user = await accounts.create_user(
            user_id=optional_str(data, "id"),
            email=optional_str(data, "email"),
            initial_credit=data.get("initial_credit"),
            actor=actor_of(request),
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
            request.path_params["user_id"],
            name=optional_str(data, "name"),
            actor=actor_of(request),
        )
        return json_response(new_key_view(fresh, record), 201)

    @admin
    async def list_keys(request: Request) -> Response:
        user = await accounts.require_user(request.path_params["user_id"])
        keys = await services.ledger.directory.list_keys(user.id)
        return json_response({"data": [key_view(k) for k in keys], "has_more": False})

    @admin
    async def revoke_key(request: Request) -> Response:
        key = await accounts.revoke_key(request.path_params["key_id"], actor=actor_of(request))
        return json_response(key_view(key))

    # -- balances ---------------------------------------------------------------------------

    @admin
    async def add_credits(request: Request) -> Response:
        data = await read_json(request)
        user_id = request.path_params["user_id"]
        entry = await accounts.add_credit(
            user_id,
            data.get("amount"),
            reason=optional_str(data, "reason"),
            actor=actor_of(request),
        )
        return json_response(await money_view(accounts, user_id, entry))

    @admin
    async def set_balance(request: Request) -> Response:
        data = await read_json(request)
        user_id = request.path_params["user_id"]
        entry = await accounts.set_balance(
            user_id,
            data.get("balance"),
            reason=optional_str(data, "reason"),
            actor=actor_of(request),
        )
        return json_response(await money_view(accounts, user_id, entry))

    @admin
    async def bulk_credits(request: Request) -> Response:
        data = await read_json(request)
        results = await accounts.bulk_credit(
            data.get("user_ids"),
            data.get("amount"),
            reason=optional_str(data, "reason"),
            actor=actor_of(request),
        )
        return json_response(bulk_view(results))

    # -- usage, stats, reports, audit -------------------------------------------------------

    @admin
    async def user_usage(request: Request) -> Response:
        user = await accounts.require_user(request.path_params["user_id"])
        return json_response(await reports.usage_page(services.ledger, user.id, query(request)))

    @admin
    async def user_stats(request: Request) -> Response:
        user = await accounts.require_user(request.path_params["user_id"])
        return json_response(await reports.stats(services.ledger, user.id, query(request)))

    @admin
    async def revenue(request: Request) -> Response:
        return json_response(await reports.revenue(services.ledger, query(request)))

    @admin
    async def models_report(request: Request) -> Response:
        return json_response(await reports.models(services.ledger, query(request)))

    @admin
    async def top_users(request: Request) -> Response:
        return json_response(await reports.top_users(services.ledger, query(request)))

    @admin
    async def audit(request: Request) -> Response:
        return json_response(await reports.audit(services.ledger, query(request)))

    # -- prices -----------------------------------------------------------------------------

    @admin
    async def models(request: Request) -> Response:
        return json_response(prices.models_view(services.catalog))

    @admin
    async def reload_models(request: Request) -> Response:
        data = await read_json(request)
        return json_response(
            await prices.reload(
                services, actor=actor_of(request), reason=optional_str(data, "reason")
            )
        )

    return [
        Route("/admin/users", create_user, methods=["POST"]),
        Route("/admin/users/{user_id}", get_user, methods=["GET"]),
        Route("/admin/users/{user_id}/keys", create_key, methods=["POST"]),
        Route("/admin/users/{user_id}/keys", list_keys, methods=["GET"]),
        Route("/admin/keys/{key_id}", revoke_key, methods=["DELETE"]),
        Route("/admin/users/{user_id}/credits", add_credits, methods=["POST"]),
        Route("/admin/users/{user_id}/balance", set_balance, methods=["PUT"]),
        Route("/admin/credits/bulk", bulk_credits, methods=["POST"]),
        Route("/admin/users/{user_id}/usage", user_usage, methods=["GET"]),
        Route("/admin/users/{user_id}/stats", user_stats, methods=["GET"]),
        Route("/admin/reports/revenue", revenue, methods=["GET"]),
        Route("/admin/reports/models", models_report, methods=["GET"]),
        Route("/admin/reports/top-users", top_users, methods=["GET"]),
        Route("/admin/audit", audit, methods=["GET"]),
        Route("/admin/models", models, methods=["GET"]),
        Route("/admin/models/reload", reload_models, methods=["POST"]),
    ]
