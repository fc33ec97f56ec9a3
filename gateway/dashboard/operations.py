"""The operator's other pages: the audit log (filters, paging), Stripe events that matched no
user (and their replay) and the prices in force (and their reload from models.yaml).

A replay runs the stored event through ``stripe_webhook.process``, the code a delivery and
``gateway stripe replay`` run: an unmatched event whose user now exists is credited, once.
"""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway.billing.stripe_webhook import parse_event, process
from gateway.dashboard.common import page, run
from gateway.errors import GatewayError
from gateway.pages.forms import read_form
from gateway.pages.sessions import check_csrf, require_operator
from gateway.records import StripeEvent
from gateway.views import event_view
from gateway.web import services_of

AUDIT_PAGE = 50
EVENTS_PAGE = 50
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
# Statuses a replay can still change (records.RETRYABLE less "processing", which a delivery
# is working on right now).
REPLAYABLE = ("unmatched", "error")


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


async def _events(request: Request, status: str) -> list[StripeEvent]:
    rows, _ = await services_of(request).ledger.payments.list_stripe_events(
        status=status, limit=EVENTS_PAGE, offset=0
    )
    return rows


async def payments(
    request: Request, *, error: str | None = None, notice: str | None = None, status: int = 200
) -> Response:
    await require_operator(request)
    shown = {s: [event_view(e) for e in await _events(request, s)] for s in REPLAYABLE}
    return page(
        request,
        "payments.html",
        {"events": shown, "error": error, "notice": notice},
        status=status,
    )


async def _find(request: Request, event_id: str) -> StripeEvent | None:
    payments_ = services_of(request).ledger.payments
    for status in REPLAYABLE:
        offset = 0
        while True:
            rows, more = await payments_.list_stripe_events(status=status, limit=200, offset=offset)
            for row in rows:
                if row.event_id == event_id:
                    return row
            if not more:
                break
            offset += len(rows)
    return None


async def replay(request: Request) -> Response:
    await require_operator(request)
    form = await read_form(request)
    await check_csrf(request, form)
    event_id = request.path_params["event_id"]
    stored = await _find(request, event_id)
    if stored is None:
        return await payments(
            request, error=f"No unmatched or failed event {event_id}.", status=404
        )
    try:
        outcome, _ = await process(
            services_of(request).billing, parse_event(stored.payload.encode()), stored.payload
        )
    except GatewayError as exc:
        return await payments(request, error=exc.message, status=exc.status)
    view = event_view(outcome)
    detail = f" ({view['detail']})" if view["detail"] else ""
    return await payments(request, notice=f"Event {event_id} replayed: {view['status']}{detail}.")


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
