"""What every dashboard page shares: the operator's action context, running an admin action
by name, the navigation and rendering.

Every change the dashboard makes runs an action of gateway/actions.py, the very function
the admin API and the CLI run, in the operator's name ``admin:dashboard`` (so the audit log
tells dashboard changes apart from API ones).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse

from gateway.accounts import Accounts
from gateway.actions import ACTIONS, ActionContext
from gateway.money import MoneyError, parse_usd
from gateway.pages.templating import render
from gateway.views import Json
from gateway.web import services_of

ACTOR = "admin:dashboard"
NAV = (
    ("/dashboard", "Revenue"),
    ("/dashboard/users", "Users"),
    ("/dashboard/audit", "Audit log"),
    ("/dashboard/payments", "Payments"),
    ("/dashboard/prices", "Prices"),
)


def action_context(request: Request) -> ActionContext:
    services = services_of(request)
    return ActionContext(Accounts(services.ledger, services.store, services.auth), ACTOR, services)


async def run(
    request: Request,
    name: str,
    path: Mapping[str, str] | None = None,
    params: Mapping[str, Any] | None = None,
) -> Json:
    """The admin action ``name`` (a key of ``ACTIONS``) on ``path`` and ``params``; raises its
    GatewayError (its message is what the page shows)."""
    return await ACTIONS[name].run(action_context(request), path or {}, params or {})


def nanos(amount: str | None) -> int:
    """An action's USD string back to nano-USD (exact), for charts; None counts as 0."""
    if amount is None:
        return 0
    try:
        return parse_usd(amount, allow_negative=True, allow_zero=True)
    except MoneyError:
        return 0


def page(
    request: Request, name: str, context: Mapping[str, Any], *, status: int = 200
) -> HTMLResponse:
    """Renders dashboard/<name> with the navigation."""
    return render(request, f"dashboard/{name}", {"nav": NAV, **context}, status=status)
