"""Operator sign-in with the admin key, sign-out, and sign-out everywhere.

A right key opens an operator session (``user_id`` None) under a new token; the key itself is
kept nowhere (not in the session row, not in the cookie). Failures are limited per client
(gateway/pages/attempts.py): after 5 in 15 minutes the form answers 429 until they age out.
Operator sessions are bound to the admin key (sessions.operator_token_hash): a new
GATEWAY_ADMIN_KEY ends them all, and so does "Sign out everywhere" without changing the key.
"""

from __future__ import annotations

import hmac
import math

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from gateway.dashboard.common import ACTOR, page
from gateway.pages import attempts, sessions
from gateway.pages.forms import read_form
from gateway.records import AuditEvent
from gateway.web import services_of

HOME = "/dashboard"


async def login_form(request: Request) -> Response:
    session = await sessions.current_session(request)
    target = sessions.safe_next(request.query_params.get("next"), HOME)
    if session is not None and session.user_id is None:
        return RedirectResponse(target, status_code=303)
    return _form(request, target)


def _form(
    request: Request, target: str, *, error: str | None = None, status: int = 200
) -> Response:
    enabled = services_of(request).settings.admin_key is not None
    if not enabled:
        error = "The dashboard is disabled: GATEWAY_ADMIN_KEY is not set."
    context = {"next": target, "enabled": enabled, "error": error}
    return page(request, "login.html", context, status=status)


async def login(request: Request) -> Response:
    form = await read_form(request)
    await sessions.check_csrf(request, form)
    target = sessions.safe_next(form.get("next"), HOME)
    expected = services_of(request).settings.admin_key
    limiter = attempts.for_app(request, "operator")
    client = attempts.client_of(request)
    wait = limiter.wait(client)
    if wait:
        minutes = math.ceil(wait / 60)
        response = _form(
            request,
            target,
            error=f"Too many failed sign-ins. Try again in {minutes} minute(s).",
            status=429,
        )
        response.headers["retry-after"] = str(math.ceil(wait))
        return response
    if expected is None:
        return _form(request, target, status=403)
    given = form.get("admin_key", "")
    if not hmac.compare_digest(given.encode(), expected.encode()):
        limiter.failed(client)
        return _form(request, target, error="That is not the admin key.", status=401)
    limiter.succeeded(client)
    response = RedirectResponse(target, status_code=303)
    await sessions.start_session(request, response, user_id=None)
    return response


async def logout(request: Request) -> Response:
    form = await read_form(request)
    await sessions.check_csrf(request, form)
    response = RedirectResponse("/dashboard/login", status_code=303)
    await sessions.end_current_session(request, response)
    return response


async def logout_everywhere(request: Request) -> Response:
    """Ends every operator session, this browser's too (e.g. a laptop left signed in);
    users' portal sessions stay. Recorded in the audit log as ``dashboard.sign_out_all``."""
    await sessions.require_operator(request)
    form = await read_form(request)
    await sessions.check_csrf(request, form)
    ledger = services_of(request).ledger
    ended = await ledger.sessions.end_operator_sessions()
    await ledger.audit.record_audit(
        AuditEvent(
            actor=ACTOR, action="dashboard.sign_out_all", target=None, details={"sessions": ended}
        )
    )
    response = RedirectResponse("/dashboard/login", status_code=303)
    await sessions.end_current_session(request, response)
    return response
