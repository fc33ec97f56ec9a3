"""The operator's other pages: the audit log (filters, paging) and the prices in force (and
their reload from models.yaml). The Stripe events to look at are in payments.py."""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway.dashboard.common import page, run
from gateway.errors import GatewayError
from gateway.pages.forms import read_form
from gateway.pages.sessions import check_csrf, require_operator

AUDIT_PAGE = 50
AUDIT_ACTIONS = (
    "credits.add",
    "balance.set",
    "credits.bulk",
    "user.create",
    "user.update",
    "key.create",
    "key.update",
    "key.revoke",
    "key.rotate",
    "models.reload",
    "models.reload_failed",
    "autotopup.configure",
    "autotopup.failed",
)


async def audit(request: Request) -> Response:
    await require_operator(request)
    q = request.query_params
    asked = {"user": q.get("user", ""), "action": q.get("action", "")}
    offset = int(q["offset"]) if q.get("offset", "").isdigit() else 0
    context = {"asked": asked, "actions": AUDIT_ACTIONS, "offset": offset, "page_size": AUDIT_PAGE}
    try:
        found = await run(
            request, "audit", params={**asked, "limit": str(AUDIT_PAGE), "offset": str(offset)}
        )
    except GatewayError as exc:
        context.update(events=[], more=False, error=exc.message)
        return page(request, "audit.html", context, status=exc.status)
    for event in found["data"]:
        details = event["details"] if isinstance(event["details"], dict) else {}
        event["details_text"] = ", ".join(
            f"{name}={value if isinstance(value, str) else orjson.dumps(value).decode()}"
            for name, value in details.items()
        )
    context.update(events=found["data"], more=found["has_more"])
    return page(request, "audit.html", context)


async def prices(
    request: Request, *, error: str | None = None, notice: str | None = None, status: int = 200
) -> Response:
    await require_operator(request)
    found = await run(request, "list_models")
    context = {"models": found["data"], "error": error, "notice": notice}
    return page(request, "prices.html", context, status=status)


async def reload_prices(request: Request) -> Response:
    await require_operator(request)
    form = await read_form(request)
    await check_csrf(request, form)
    try:
        done = await run(request, "reload_models", params={"reason": form.get("reason") or None})
    except GatewayError as exc:
        return await prices(request, error=exc.message, status=exc.status)
    changed = len(done["changes"])
    notice = f"Reloaded {done['models']} models from models.yaml: {changed} price change(s)."
    return await prices(request, notice=notice)
