"""/dashboard/users: the users list (search, paging) and one user's page with its actions:
credits added or the balance set (with a reason), keys revoked, limits, disable/enable, and
a portal login link (shown once, on the page the POST answers).

Each POST runs the admin action of the same name and answers 303 back to the user's page
with a notice; a refused change re-renders the page with the action's error (and its status)
and changes nothing.

The money forms (add credit, set balance) carry a one-time ``form_id`` made when the page is
rendered; it becomes the operation's idempotency reference, so the same rendered form posted
twice (a double click, a resubmission, a replayed request) moves money once and the second
post says it was already applied.

Revoking a key and disabling a user ask first: the page's script asks in the browser and
sends ``confirm=yes``; a post without it (no script) is answered with a confirm page whose
button sends it.
"""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from gateway.dashboard.common import page, run
from gateway.errors import BadRequest, GatewayError, NotFound
from gateway.pages.forms import read_form
from gateway.pages.sessions import check_csrf, require_operator
from gateway.records import PERIODS

PAGE = 25
USAGE_PAGE = 20
NOTICES = {
    "credit": "Credit added.",
    "balance": "Balance set.",
    "revoked": "Key revoked.",
    "disabled": "User disabled: their keys are refused.",
    "enabled": "User enabled.",
    "limits": "Limits saved.",
    "already": "Already applied: this form had been submitted before, so nothing changed now.",
}


async def users(request: Request) -> Response:
    await require_operator(request)
    query = request.query_params.get("q", "")
    cursor = request.query_params.get("cursor", "")
    context: dict[str, Any] = {"q": query, "cursor": cursor, "users": [], "next_cursor": None}
    try:
        found = await run(
            request, "list_users", params={"query": query, "cursor": cursor, "limit": str(PAGE)}
        )
    except GatewayError as exc:
        return page(request, "users.html", {**context, "error": exc.message}, status=exc.status)
    context.update(users=found["data"], next_cursor=found["next_cursor"])
    return page(request, "users.html", context)


async def user(request: Request) -> Response:
    await require_operator(request)
    notice = NOTICES.get(request.query_params.get("done", ""))
    return await user_page(request, notice=notice)


async def user_page(
    request: Request, *, error: str | None = None, notice: str | None = None, status: int = 200
) -> Response:
    user_id = request.path_params["user_id"]
    path = {"user_id": user_id}
    cursor = request.query_params.get("cursor", "")
    try:
        shown = await run(request, "get_user", path)
    except NotFound as exc:
        return page(request, "missing.html", {"error": exc.message}, status=404)
    keys = await run(request, "list_keys", path)
    try:
        usage = await run(request, "usage", path, {"limit": str(USAGE_PAGE), "cursor": cursor})
    except GatewayError as exc:  # a cursor edited by hand
        usage = {"data": [], "next_cursor": None}
        error, status = error or exc.message, exc.status
    context = {
        "user": shown,
        "keys": keys["data"],
        "usage": usage["data"],
        "next_cursor": usage["next_cursor"],
        "cursor": cursor,
        "periods": PERIODS,
        "error": error,
        "notice": notice,
        "form_id": secrets.token_urlsafe(16),
    }
    return page(request, "user.html", context, status=status)


async def _change(request: Request, name: str, params: dict[str, Any], done: str) -> Response:
    """Runs the action ``name`` for the user of the path; 303 back, or the page with the
    error."""
    user_id = request.path_params["user_id"]
    try:
        answer = await run(request, name, {"user_id": user_id}, params)
    except GatewayError as exc:
        return await user_page(request, error=exc.message, status=exc.status)
    if answer.get("duplicate"):
        done = "already"
    return RedirectResponse(f"/dashboard/users/{quote(user_id, safe='')}?done={done}", 303)


def _reference(form: dict[str, str], what: str) -> str:
    """The money form's idempotency reference: its one-time ``form_id`` and what it does (the
    page's two money forms share one id). Raises BadRequest without one."""
    form_id = form.get("form_id", "")
    if not 16 <= len(form_id) <= 64:
        raise BadRequest("this form is out of date: reload the page and try again")
    return f"dashboard:{form_id}:{what}"


async def add_credit(request: Request) -> Response:
    return await _money_form(request, "add_credit", field="amount", what="credit")


async def set_balance(request: Request) -> Response:
    return await _money_form(request, "set_balance", field="balance", what="balance")


async def _money_form(request: Request, action: str, *, field: str, what: str) -> Response:
    """One of the user page's money forms: ``field`` (USD) and a reason, applied once per
    rendered form (its ``form_id`` is the operation's idempotency reference)."""
    await require_operator(request)
    form = await read_form(request)
    await check_csrf(request, form)
    try:
        reference = _reference(form, what)
    except BadRequest as exc:
        return await user_page(request, error=exc.message, status=exc.status)
    params = {
        field: form.get(field, ""),
        "reason": form.get("reason") or None,
        "reference": reference,
    }
    return await _change(request, action, params, what)


def _confirm(
    request: Request, *, title: str, message: str, button: str, fields: dict[str, str]
) -> Response:
    """The page that asks before a change that cannot be taken back quietly; its form posts
    ``fields`` again to this same address with ``confirm=yes``."""
    back = f"/dashboard/users/{quote(request.path_params['user_id'], safe='')}"
    context = {
        "title": title,
        "message": message,
        "button": button,
        "fields": fields,
        "action": request.url.path,
        "back": back,
    }
    return page(request, "confirm.html", context)


async def set_status(request: Request) -> Response:
    await require_operator(request)
    form = await read_form(request)
    await check_csrf(request, form)
    disabled = form.get("disabled") == "true"
    user_id = request.path_params["user_id"]
    if disabled and form.get("confirm") != "yes":
        return _confirm(
            request,
            title=f"Disable user {user_id}?",
            message="Every key of theirs is refused at once; their balance is kept. You can "
            "enable them again later.",
            button="Disable user",
            fields={"disabled": "true"},
        )
    done = "disabled" if disabled else "enabled"
    return await _change(request, "update_user", {"disabled": disabled}, done)


def _count(text: str) -> int | str | None:
    # Blank clears the limit; anything not a whole number goes on to the action's parser,
    # whose message names the field.
    if text == "":
        return None
    return int(text) if text.isdigit() else text


async def set_limits(request: Request) -> Response:
    await require_operator(request)
    form = await read_form(request)
    await check_csrf(request, form)
    budget = None
    if form.get("budget"):
        budget = {
            "amount": form["budget"],
            "period": form.get("period") or "total",
            "tz": form.get("tz") or "UTC",
        }
    limits = {
        "budget": budget,
        **{name: _count(form.get(name, "")) for name in ("rpm", "tpm", "max_concurrent")},
    }
    return await _change(request, "update_user", {"limits": limits}, "limits")


async def revoke_key(request: Request) -> Response:
    await require_operator(request)
    form = await read_form(request)
    await check_csrf(request, form)
    user_id = request.path_params["user_id"]
    key_id = request.path_params["key_id"]
    try:
        key = await run(request, "get_key", {"key_id": key_id})
        if key["user_id"] != user_id:
            raise NotFound(f"user {user_id} has no key {key_id}", code="key_not_found")
        if form.get("confirm") != "yes":
            return _confirm(
                request,
                title=f"Revoke key {key['prefix']}…?",
                message=f"Key {key['prefix']}… ({key['name'] or key_id}) of user {user_id} "
                "is refused at once, for good: its callers need a new key.",
                button="Revoke key",
                fields={},
            )
        await run(request, "revoke_key", {"key_id": key_id})
    except GatewayError as exc:
        return await user_page(request, error=exc.message, status=exc.status)
    return RedirectResponse(f"/dashboard/users/{quote(user_id, safe='')}?done=revoked", 303)


async def login_link(request: Request) -> Response:
    """A one-time link for the user to set their portal email and password (the
    ``login_link`` action): shown on the page this POST answers, never again."""
    await require_operator(request)
    form = await read_form(request)
    await check_csrf(request, form)
    try:
        made = await run(request, "login_link", {"user_id": request.path_params["user_id"]})
    except GatewayError as exc:
        return await user_page(request, error=exc.message, status=exc.status)
    what = "resets their password" if made["has_login"] else "gives them a portal login"
    notice = (
        f"Send this link to the user; it {what}, works once and expires "
        f"{made['expires_at'][:16].replace('T', ' ')} UTC: {made['url']}"
    )
    return await user_page(request, notice=notice)
