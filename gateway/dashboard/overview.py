"""/dashboard: revenue per day in a chosen time zone (chart and table), the period's totals,
revenue by model and the top users, from the admin API's reports (revenue, models_report,
top_users) over one period."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from gateway.dashboard.common import nanos, page, run
from gateway.errors import GatewayError
from gateway.pages.charts import bar_chart
from gateway.pages.sessions import require_operator

ZONES = (
    "UTC",
    "Europe/London",
    "Europe/Paris",
    "America/New_York",
    "America/Los_Angeles",
    "Asia/Tokyo",
    "Asia/Kolkata",
    "Australia/Sydney",
)


async def overview(request: Request) -> Response:
    await require_operator(request)
    query = request.query_params
    asked = {name: query.get(name, "") for name in ("tz", "from", "to")}
    context: dict[str, Any] = {"asked": asked, "zones": ZONES}
    try:
        revenue = await run(request, "revenue", params=asked)
        span = {"tz": revenue["tz"], "from": revenue["from"] or "", "to": revenue["to"] or ""}
        models = await run(request, "models_report", params=span)
        top = await run(request, "top_users", params={**span, "limit": "10"})
    except GatewayError as exc:
        return page(request, "home.html", {**context, "error": exc.message}, status=exc.status)
    days = list(reversed(revenue["data"]))  # oldest first, as a chart reads
    chart = bar_chart(
        [(d["day"][5:], nanos(d["revenue"])) for d in days],
        title=f"Revenue per day ({revenue['tz']})",
    )
    context.update(
        revenue=revenue,
        days=revenue["data"],
        chart=chart,
        first=days[0]["day"] if days else "",
        last=days[-1]["day"] if days else "",
        models=models["data"],
        top=top["data"],
    )
    return page(request, "home.html", context)
