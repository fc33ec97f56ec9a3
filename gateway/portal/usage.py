"""The user's usage: a table filtered by date range, model and key, paged by cursor; the
same rows as CSV (gateway/exports.py, as /me/usage/export); spend per day and per model as
charts.

The filters are the API's parameters (``from``, ``to``, ``model``, ``key``, ``cursor``) and
go through the same services (gateway/reports.py), always with the signed-in user's id: a
key id of another user filters to nothing.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from gateway import reports
from gateway.errors import GatewayError
from gateway.exports import export_lines, export_query
from gateway.money import parse_usd
from gateway.pages.charts import bar_chart
from gateway.portal.common import failed, page, signed_in
from gateway.portal.overview import key_names
from gateway.records import utcnow
from gateway.report_records import Period
from gateway.web import services_of

FILTERS = ("from", "to", "model", "key")
CHART_DAYS = 30
PAGE = 25


def _asked(request: Request) -> dict[str, str]:
    return {name: request.query_params.get(name, "").strip() for name in (*FILTERS, "cursor")}


def _empty(asked: dict[str, str], *, keys: list[Any] | None = None) -> dict[str, Any]:
    """A usage page's context before (or without) its rows and charts."""
    return {
        "asked": asked,
        "keys": keys or [],
        "key_names": key_names(keys or []),
        "rows": [],
        "models": [],
        "query": {},
    }


async def usage(request: Request) -> Response:
    _, user = await signed_in(request)
    ledger = services_of(request).ledger
    asked = _asked(request)
    filters = {k: v for k, v in asked.items() if v}
    keys = await ledger.directory.list_keys(user.id)
    context = _empty(asked, keys=keys)
    try:
        rows = await reports.usage_page(ledger, user.id, {**filters, "limit": str(PAGE)})
        context.update(await _charts(request, user.id, asked))
    except GatewayError as exc:
        return failed(request, "usage.html", context, exc)
    query = {k: v for k, v in filters.items() if k != "cursor"}
    context.update(
        rows=rows["data"],
        next_cursor=rows["next_cursor"],
        query=query,
        paged=bool(asked["cursor"]),
    )
    return page(request, "usage.html", context)


async def _charts(request: Request, user_id: str, asked: dict[str, str]) -> dict[str, Any]:
    """Spend per day over the range asked (default: the last 30 days) and per model."""
    ledger = services_of(request).ledger
    days = {"from": asked["from"], "to": asked["to"]}
    if not days["from"] and not days["to"]:
        today = utcnow().date()
        days = {"from": (today - timedelta(days=CHART_DAYS - 1)).isoformat(), "to": ""}
    spend = await reports.revenue(ledger, days, user_id=user_id)
    per_day = [
        (d["day"][5:], parse_usd(d["revenue"], allow_zero=True)) for d in reversed(spend["data"])
    ]
    span = reports.period(days, reports.zone({}))
    totals, models = await ledger.reports.usage_totals(
        user_id=user_id, period=Period(span.start, span.end)
    )
    per_model = [(m.model, m.totals.cost) for m in models]
    offered = set(services_of(request).catalog.models) | {m.model for m in models}
    return {
        "day_chart": bar_chart(per_day, title="Spend per day (USD)"),
        "model_chart": bar_chart(per_model, title="Spend per model (USD)"),
        "total": totals.cost,
        "models": sorted(offered),
    }


async def usage_csv(request: Request) -> Response:
    _, user = await signed_in(request)
    services = services_of(request)
    params = {k: v for k, v in _asked(request).items() if v and k != "cursor"}
    try:
        query = export_query({**params, "format": "csv"}, user_id=user.id)
    except GatewayError as exc:
        return failed(request, "usage.html", _empty(_asked(request)), exc)
    # Every check ran above: once the first byte is sent an error can only cut the stream.
    return StreamingResponse(
        export_lines(services.ledger, query),
        media_type=query.media_type,
        headers={
            "content-disposition": 'attachment; filename="usage.csv"',
            "cache-control": "no-store",
        },
    )
