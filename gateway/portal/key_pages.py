"""The user's API keys: list, create (the key shown once, with a copy button, on the page the
creation redirects to), name, revoke and the per-key limits (budget, rpm, tpm,
max_concurrent, models).

The same services as /me/keys (gateway/keys.py, gateway/accounts.py) with the same checks,
on the signed-in user's keys only: another user's key id is a 404 page.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from gateway import keys
from gateway.errors import GatewayError, NotFound, Unprocessable
from gateway.money import format_usd, parse_usd
from gateway.pages.cookies import clear_cookie, set_cookie
from gateway.portal.common import accounts, actor, failed, page, posted, signed_in
from gateway.records import PERIODS, ApiKey, Limits, User, utcnow

# The new key travels from the POST to the page that shows it in this cookie only (HttpOnly,
# a minute, cleared by that page): the POST answers a redirect, so reloading the page never
# sends the form again (a second key), and the key is never stored on the server in clear.
NEW_KEY = "gateway_new_key"
NEW_KEY_SECONDS = 60


async def key_list(request: Request) -> Response:
    _, user = await signed_in(request)
    context = await _list_context(request, user)
    flashed = request.cookies.get(NEW_KEY, "")
    key_id, _, key = flashed.partition(":")
    if key and key_id == request.query_params.get("created"):
        record = next((k for k, _ in context["keys"] if k.id == key_id), None)
        if record is not None:
            context["created"] = (record, key)
    response = page(request, "keys.html", context)
    if flashed:
        clear_cookie(request, response, NEW_KEY)
    return response


async def _list_context(request: Request, user: User) -> dict[str, Any]:
    listed = await accounts(request).ledger.directory.list_keys(user.id)
    now = utcnow()
    return {
        "keys": [(k, key_state(k, now)) for k in listed],
        "created": None,
        "name": "",
        "revoked": request.query_params.get("revoked"),
    }


async def create(request: Request) -> Response:
    _, user = await signed_in(request)
    form = await posted(request)
    try:
        params = key_params(form)
        fresh, record = await keys.create_key(accounts(request), user.id, params, actor=actor(user))
    except GatewayError as exc:
        context = {**await _list_context(request, user), "name": form.get("name", "")}
        return failed(request, "keys.html", context, exc, fields=KEY_FIELDS)
    response = RedirectResponse(f"/portal/keys?created={record.id}", status_code=303)
    set_cookie(request, response, NEW_KEY, f"{record.id}:{fresh.key}", NEW_KEY_SECONDS)
    return response


def _missing(request: Request) -> Response:
    # The same page whether the key is another user's or does not exist at all.
    return page(request, "missing.html", {"what": "key"}, status=404)


async def _own(request: Request, user: User) -> ApiKey:
    return await keys.require_key(accounts(request), request.path_params["key_id"], user_id=user.id)


async def detail(request: Request) -> Response:
    _, user = await signed_in(request)
    try:
        key = await _own(request, user)
    except NotFound:
        return _missing(request)
    return page(request, "key.html", await _detail_context(request, key))


async def _detail_context(request: Request, key: ApiKey) -> dict[str, Any]:
    found = await keys.limit_usage(accounts(request), key.user_id, f"k:{key.id}", key.limits)
    usage = None
    if found is not None:
        counters, resets = found
        usage = {
            "spent": counters.spent,
            "reserved": counters.reserved,
            "requests": counters.requests,
            "tokens": counters.tokens,
            "in_flight": counters.in_flight,
            "resets": resets,
        }
    return {
        "key": key,
        "usage": usage,
        "form": settings_form(key),
        "periods": PERIODS,
        "saved": request.query_params.get("saved"),
    }


async def update(request: Request) -> Response:
    _, user = await signed_in(request)
    form = await posted(request)
    try:
        key = await _own(request, user)
    except NotFound:
        return _missing(request)
    try:
        params = key_params(form, with_limits=True)
        await keys.update_key(accounts(request), key.id, params, actor=actor(user))
    except GatewayError as exc:
        context = {**await _detail_context(request, key), "form": {**settings_form(key), **form}}
        return failed(request, "key.html", context, exc, fields=KEY_FIELDS)
    return RedirectResponse(f"/portal/keys/{key.id}?saved=1", status_code=303)


async def revoke(request: Request) -> Response:
    _, user = await signed_in(request)
    await posted(request)
    try:
        key = await _own(request, user)
    except NotFound:
        return _missing(request)
    await accounts(request).revoke_key(key.id, actor=actor(user))
    return RedirectResponse(f"/portal/keys?revoked={key.id}", status_code=303)


def key_state(key: ApiKey, now: datetime) -> str:
    if key.revoked_at is not None:
        return "revoked"
    return "active" if key.usable(now) else "expired"


# The key form's fields: a refusal naming one is shown beside it (the service's own
# parameter names map to the same fields).
KEY_FIELDS = {
    "name": "name",
    "budget": "budget",
    "limits.budget.amount": "budget",
    "tz": "tz",
    "rpm": "rpm",
    "tpm": "tpm",
    "max_concurrent": "max_concurrent",
    "models": "models",
}
COUNT_LABELS = {
    "rpm": "Requests per minute",
    "tpm": "Tokens per minute",
    "max_concurrent": "Calls at once",
}


def check_key_form(form: dict[str, str]) -> None:
    """The key form's fields in plain words, before the API's checks (which name its JSON
    fields): 422 naming the field."""
    for name, label in COUNT_LABELS.items():
        raw = form.get(name, "")
        if raw and (not raw.isdigit() or int(raw) < 1):
            raise Unprocessable(
                f"{label}: enter a whole number above 0, or leave it empty for no limit",
                param=name,
            )
    if form.get("budget"):
        try:
            parse_usd(form["budget"], allow_zero=True)
        except ValueError as exc:
            raise Unprocessable(
                "Budget: enter an amount in dollars such as 25.00, or leave it empty for none",
                param="budget",
            ) from exc
        try:
            ZoneInfo(form.get("tz") or "UTC")
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise Unprocessable(
                "Time zone: enter a zone name such as UTC or Europe/Paris", param="tz"
            ) from exc


def key_params(form: dict[str, str], *, with_limits: bool = False) -> dict[str, Any]:
    """A key form as the API body it stands for (parsed and checked by gateway.keys): an
    empty field clears its setting; counts are whole numbers; models comma-separated."""
    params: dict[str, Any] = {"name": form.get("name") or None}
    if not with_limits:
        return params
    check_key_form(form)
    budget = None
    if form.get("budget"):
        budget = {
            "amount": form["budget"],
            "period": form.get("period") or "month",
            "tz": form.get("tz") or "UTC",
        }
    params["limits"] = {
        "budget": budget,
        **{name: _count(form.get(name, "")) for name in ("rpm", "tpm", "max_concurrent")},
    }
    models = [m.strip() for m in form.get("models", "").split(",") if m.strip()]
    params["models"] = models or None
    return params


def _count(raw: str) -> int | str | None:
    # A non-number goes through as text, so the API's own message names the field.
    return int(raw) if raw.isdigit() else (raw or None)


def settings_form(key: ApiKey) -> dict[str, str]:
    """The key's settings as the form's field values."""
    limits = key.limits or Limits()
    return {
        "name": key.name or "",
        "budget": format_usd(limits.budget) if limits.budget is not None else "",
        "period": limits.period if limits.budget is not None else "month",
        "tz": limits.tz,
        "rpm": str(limits.rpm or ""),
        "tpm": str(limits.tpm or ""),
        "max_concurrent": str(limits.max_concurrent or ""),
        "models": ", ".join(key.models or ()),
    }
