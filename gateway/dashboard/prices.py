"""/dashboard/prices: the prices in force, and their reload from models.yaml."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from gateway.dashboard.common import page, run
from gateway.errors import GatewayError
from gateway.pages.forms import read_form
from gateway.pages.sessions import check_csrf, require_operator


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
