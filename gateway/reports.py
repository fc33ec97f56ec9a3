"""Usage, stats, reports and audit answers, shared by the admin API, /me and the CLI.

Every function takes the ledger and the query parameters as strings (an HTTP query or the
CLI's flags), so the API and ``gateway ... --direct`` parse, validate and answer identically.
The database aggregates; Python only parses parameters, computes day boundaries and formats.

Ranges: ``from``/``to`` are ISO dates or datetimes. A date means that whole local day in
``tz`` (``to`` included: ``from=2024-05-01&to=2024-05-31`` is all of May); a datetime is an
instant (naive ones are read in ``tz``) and the range is ``[from, to)``. ``tz`` is an IANA name,
default UTC. Invalid values are 400s naming the parameter.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gateway.errors import BadRequest
from gateway.ledger.base import Ledger
from gateway.ledger.reports import GROUPS, days_between
from gateway.records import UsageRecord, utcnow
from gateway.report_records import Cursor, GroupTotals, ModelTotals, Period, Totals, UsageFilter
from gateway.views import audit_view, average_cost, period_view, share, totals_view, usage_view

Params = Mapping[str, str]
REVENUE_DEFAULT_DAYS = 30
MAX_DAYS = 3660  # ten years of days: far beyond any report, small enough for one statement


# -- parameters ----------------------------------------------------------------------------


def int_param(params: Params, name: str, default: int, low: int, high: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise BadRequest(
            f"{name} must be an integer between {low} and {high}",
            param=name,
            code="invalid_parameter",
        )
    return int(raw)


def zone(params: Params) -> ZoneInfo:
    raw = params.get("tz") or "UTC"
    try:
        return ZoneInfo(raw)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise BadRequest(
            f"tz: unknown time zone {raw!r}; use an IANA name like Europe/Paris",
            param="tz",
            code="invalid_parameter",
        ) from exc


def _instant(raw: str, tz: ZoneInfo, *, name: str, end: bool) -> datetime:
    try:
        if len(raw) == 10:
            day = date.fromisoformat(raw)
            local = datetime.combine(day + timedelta(days=1 if end else 0), datetime.min.time())
            return local.replace(tzinfo=tz).astimezone(UTC)
        value = datetime.fromisoformat(raw)
    except ValueError as exc:
        raise BadRequest(
            f"{name}: {raw!r} is not an ISO date (2024-05-31) or datetime",
            param=name,
            code="invalid_parameter",
        ) from exc
    if value.tzinfo is None:
        value = value.replace(tzinfo=tz)
    return value.astimezone(UTC)


def period(params: Params, tz: ZoneInfo) -> Period:
    start = _instant(params["from"], tz, name="from", end=False) if params.get("from") else None
    end = _instant(params["to"], tz, name="to", end=True) if params.get("to") else None
    if start is not None and end is not None and start >= end:
        raise BadRequest("from must be before to", param="from", code="invalid_parameter")
    return Period(start=start, end=end)


def encode_cursor(record: UsageRecord) -> str:
    return encode_position(record.created_at, record.request_id)


def encode_position(created_at: datetime, row_id: str) -> str:
    """A cursor naming a row by its time and id (``decode_cursor`` reads it back; the id is
    then its ``request_id``, whatever kind of row it names)."""
    raw = f"{created_at.isoformat()}|{row_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(raw: str) -> Cursor:
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
        when, request_id = text.split("|", 1)
        created_at = datetime.fromisoformat(when)
        if created_at.tzinfo is None or not request_id:
            raise ValueError("incomplete cursor")
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise BadRequest(
            "cursor: not a cursor this API returned", param="cursor", code="invalid_cursor"
        ) from exc
    return Cursor(created_at=created_at, request_id=request_id)


# -- services ------------------------------------------------------------------------------


def usage_filter(params: Params) -> UsageFilter | None:
    """The ``from``/``to`` (in ``tz``), ``model`` and ``key`` a usage page or export asks
    for; None when it asks for none."""
    only = UsageFilter(
        period(params, zone(params)), params.get("model") or None, params.get("key") or None
    )
    return None if only == UsageFilter() else only


async def usage_page(ledger: Ledger, user_id: str, params: Params) -> dict[str, Any]:
    """Newest first. ``cursor`` (from ``next_cursor``) pages without skips or repeats even
    while calls land; ``offset`` is kept for simple scripts (without filters). ``from``,
    ``to``, ``model`` and ``key`` narrow the rows (``usage_filter``)."""
    limit = int_param(params, "limit", 50, 1, 1000)
    raw_cursor = params.get("cursor")
    only = usage_filter(params)
    if raw_cursor or only is not None:
        if params.get("offset"):
            raise BadRequest(
                "offset cannot be combined with cursor or filters: page with cursor",
                param="offset",
                code="invalid_parameter",
            )
        rows, more = await ledger.reports.list_usage_before(
            user_id,
            cursor=decode_cursor(raw_cursor) if raw_cursor else None,
            limit=limit,
            only=only,
        )
    else:
        offset = int_param(params, "offset", 0, 0, 10**9)
        rows, more = await ledger.reports.list_usage(user_id, limit=limit, offset=offset)
    return {
        "data": [usage_view(r) for r in rows],
        "has_more": more,
        "next_cursor": encode_cursor(rows[-1]) if more and rows else None,
    }


async def stats(ledger: Ledger, user_id: str, params: Params) -> dict[str, Any]:
    """Totals and the per-model breakdown (``models``); with ``group_by`` also ``groups``, the
    breakdown by that attribute (``group_by``: see ``breakdown``)."""
    p = period(params, zone(params))
    group_by = params.get("group_by") or None
    if group_by is None:
        totals, models = await ledger.reports.usage_totals(user_id=user_id, period=p)
        return {
            "user_id": user_id,
            **period_view(p),
            **totals_view(totals, money="cost"),
            "average_cost": average_cost(totals),
            "models": [_model_view(m, "cost") for m in models],
        }
    totals, groups, more = await breakdown(ledger, user_id, p, params, money="cost")
    return {
        "user_id": user_id,
        **period_view(p),
        **totals_view(totals, money="cost"),
        "average_cost": average_cost(totals),
        "group_by": group_by,
        "groups": groups,
        "has_more": more,
        **({"models": groups} if group_by == "model" else {}),
    }


async def usage_report(ledger: Ledger, params: Params) -> dict[str, Any]:
    """All users' (or ``user``'s) usage by ``group_by`` (default model), highest revenue
    first."""
    p = period(params, zone(params))
    user_id = params.get("user") or None
    total, groups, more = await breakdown(ledger, user_id, p, params, money="revenue")
    return {
        "data": groups,
        "has_more": more,
        "group_by": params.get("group_by") or "model",
        "user_id": user_id,
        **period_view(p),
        "total": totals_view(total, money="revenue"),
    }


# The name each breakdown's group value goes by in an answer.
GROUP_NAMES = {"key": "key_id", "tag": "tag", "end_user": "end_user", "session": "session_id"}


async def breakdown(
    ledger: Ledger, user_id: str | None, p: Period, params: Params, *, money: str
) -> tuple[Totals, list[dict[str, Any]], bool]:
    """Totals and groups by ``group_by``: model (default; provider:model), key, tag, end_user
    or session; at most ``limit`` groups (default 100), highest cost first. A group named
    null holds the calls without the attribute; by tag a call counts in each of its tags."""
    group_by = params.get("group_by") or "model"
    if group_by not in GROUPS:
        raise BadRequest(
            f"group_by must be one of {', '.join(GROUPS)}",
            param="group_by",
            code="invalid_parameter",
        )
    limit = int_param(params, "limit", 100, 1, 1000)
    if group_by == "model":
        totals, models = await ledger.reports.usage_totals(user_id=user_id, period=p)
        return totals, [_model_view(m, money) for m in models[:limit]], len(models) > limit
    totals, groups, more = await ledger.reports.usage_groups(
        user_id=user_id, period=p, group_by=group_by, limit=limit
    )
    name = GROUP_NAMES[group_by]
    return totals, [_group_view(name, g, money) for g in groups], more


def _model_view(m: ModelTotals, money: str) -> dict[str, Any]:
    return {
        "provider": m.provider,
        "model": m.model,
        **totals_view(m.totals, money=money),
        "average_cost": average_cost(m.totals),
    }


def _group_view(name: str, g: GroupTotals, money: str) -> dict[str, Any]:
    return {
        name: g.group,
        **totals_view(g.totals, money=money),
        "average_cost": average_cost(g.totals),
    }


async def revenue(
    ledger: Ledger, params: Params, *, now: datetime | None = None, user_id: str | None = None
) -> dict[str, Any]:
    """Per local day of ``tz``, newest first, zero days included; default the last 30 days.
    ``user_id``: that user's spend only (the portal's chart)."""
    tz = zone(params)
    p = period(params, tz)
    today = (now or utcnow()).astimezone(tz).date()
    last = (p.end - timedelta(microseconds=1)).astimezone(tz).date() if p.end else today
    first = (
        p.start.astimezone(tz).date()
        if p.start
        else last - timedelta(days=REVENUE_DEFAULT_DAYS - 1)
    )
    if first > last:
        raise BadRequest("from must be before to", param="from", code="invalid_parameter")
    if (last - first).days >= MAX_DAYS:
        raise BadRequest(
            f"a revenue report covers at most {MAX_DAYS} days",
            param="from",
            code="invalid_parameter",
        )
    days = days_between(first, last, tz, clip=p)
    total, rows = await ledger.reports.revenue_by_day(days, user_id=user_id)
    return {
        "data": [
            {
                "day": r.day.day.isoformat(),
                "start": r.day.start.isoformat(),
                "end": r.day.end.isoformat(),
                **totals_view(r.totals, money="revenue"),
            }
            for r in reversed(rows)
        ],
        "has_more": False,
        "tz": tz.key,
        "from": days[0].start.isoformat() if days else None,
        "to": days[-1].end.isoformat() if days else None,
        "total": totals_view(total, money="revenue"),
    }


async def models(ledger: Ledger, params: Params) -> dict[str, Any]:
    """Per provider:model, highest revenue first."""
    p = period(params, zone(params))
    total, rows = await ledger.reports.usage_totals(user_id=None, period=p)
    return {
        "data": [
            {
                "id": f"{m.provider}:{m.model}",
                "provider": m.provider,
                "model": m.model,
                **totals_view(m.totals, money="revenue"),
            }
            for m in rows
        ],
        "has_more": False,
        **period_view(p),
        "total": totals_view(total, money="revenue"),
    }


async def top_users(ledger: Ledger, params: Params) -> dict[str, Any]:
    p = period(params, zone(params))
    limit = int_param(params, "limit", 10, 1, 1000)
    total, rows, more = await ledger.reports.top_users(period=p, limit=limit)
    return {
        "data": [
            {
                "user_id": u.user_id,
                **totals_view(u.totals, money="revenue"),
                "share": share(u.totals.cost, total.cost),
            }
            for u in rows
        ],
        "has_more": more,
        **period_view(p),
        "total": totals_view(total, money="revenue"),
    }


async def audit(ledger: Ledger, params: Params) -> dict[str, Any]:
    """Newest first; ``user`` (or ``target``) and ``action`` filter."""
    limit = int_param(params, "limit", 50, 1, 1000)
    offset = int_param(params, "offset", 0, 0, 10**9)
    target = params.get("user") or params.get("target") or None
    events, more = await ledger.audit.list_audit(
        target=target, action=params.get("action") or None, limit=limit, offset=offset
    )
    return {"data": [audit_view(e) for e in events], "has_more": more}
