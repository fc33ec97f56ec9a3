"""The admin API, generated from gateway/actions.py: one route per action (Bearer
GATEWAY_ADMIN_KEY).

Each route checks the admin key, reads the action's parameters (the query string of a GET or
DELETE, the JSON body otherwise) and runs the action, exactly as the CLI's ``--direct`` mode
runs it. The admin key is shared; an ``X-Gateway-Actor`` header (e.g. the operator's login,
sent by the CLI) is recorded in the audit trail as ``admin:<name>``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.accounts import Accounts
from gateway.actions import ACTIONS, ActionContext
from gateway.auth import check_admin
from gateway.web import json_response, read_json, services_of

ACTOR = "admin"
_ACTOR_NAME = re.compile(r"^[A-Za-z0-9_.@:-]{1,64}\Z")


def actor_of(request: Request) -> str:
    name = request.headers.get("x-gateway-actor")
    return f"{ACTOR}:{name}" if name and _ACTOR_NAME.match(name) else ACTOR


def action_routes() -> list[Route]:
    """One route per row of ``ACTIONS``, named after the action."""
    return [
        Route(action.path, functools.partial(perform, name), methods=[action.method], name=name)
        for name, action in ACTIONS.items()
    ]


async def perform(name: str, request: Request) -> Response:
    """Runs the action ``name`` for an admin request."""
    services = services_of(request)
    await check_admin(
        services.settings.admin_key, request.headers.get("authorization"), services.auth
    )
    action = ACTIONS[name]
    params: Mapping[str, Any]
    if action.method in ("GET", "DELETE"):
        params = dict(request.query_params)
    else:
        params = await read_json(request)
    context = ActionContext(
        Accounts(services.ledger, services.store, services.auth), actor_of(request), services
    )
    return json_response(await action.run(context, request.path_params, params), action.status)
