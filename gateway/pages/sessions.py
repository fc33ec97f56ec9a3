"""Sign-in sessions of the web pages, stored server-side (the ledger's ``Sessions`` port).

The ``gateway_session`` cookie holds a random token; the database holds only its SHA-256, so
a copy of the table signs nobody in. ``start_session`` always issues a NEW token (and ends
the browser's old session), so a token planted before sign-in is worthless after it (session
fixation). Operator sessions have ``user_id`` None: the admin key they were opened with is
stored nowhere, neither in the session nor in the cookie. They are stored under
``operator_token_hash`` instead, which the admin key in force keys: after the key is rotated
(GATEWAY_ADMIN_KEY changed, the gateway restarted) no operator session opened with the old one
is found any more.

Every POST form carries ``csrf_token``; ``check_csrf`` compares it (in constant time) with
the session's token, or with the ``gateway_csrf`` cookie before sign-in (cookies.py).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import timedelta
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from gateway.pages import cookies
from gateway.pages.exits import PageExit
from gateway.pages.templating import render
from gateway.records import User, WebSession, utcnow
from gateway.web import services_of

_UNSET = object()


def token_hash(token: str) -> str:
    """The SHA-256 (hex) the database keys a session by."""
    return hashlib.sha256(token.encode()).hexdigest()


def operator_token_hash(token: str, admin_key: str) -> str:
    """The hash (hex) an operator session is keyed by: HMAC-SHA256 of the token under the
    SHA-256 of the admin key in force when it was opened. Neither the token nor the key can
    be read back from it, and another admin key finds none of the old key's sessions."""
    fingerprint = hashlib.sha256(admin_key.encode()).digest()
    return hmac.new(fingerprint, token.encode(), hashlib.sha256).hexdigest()


def _hashes(request: Request, token: str) -> list[str]:
    # Every hash this token's session can be stored under: a user's, an operator's.
    admin_key = services_of(request).settings.admin_key
    plain = [token_hash(token)]
    return plain if admin_key is None else [*plain, operator_token_hash(token, admin_key)]


async def _lookup(request: Request, token: str) -> WebSession | None:
    sessions = services_of(request).ledger.sessions
    user_hash, *operator_hash = _hashes(request, token)
    found = await sessions.get_session(user_hash)
    if found is not None:
        # An operator session under the plain hash predates the binding to the admin key:
        # nothing says which key opened it, so it signs nobody in.
        return found if found.user_id is not None else None
    for hashed in operator_hash:
        found = await sessions.get_session(hashed)
        if found is not None and found.user_id is None:
            return found
    return None


async def current_session(request: Request) -> WebSession | None:
    """The live session of the request's cookie, or None (no cookie, unknown or expired, an
    operator session opened with another admin key). Read once per request."""
    known = getattr(request.state, "web_session", _UNSET)
    if known is not _UNSET:
        return known  # type: ignore[return-value]
    token = request.cookies.get(cookies.SESSION)
    session = None
    if token and len(token) <= 200:
        session = await _lookup(request, token)
    request.state.web_session = session
    return session


async def start_session(request: Request, response: Response, *, user_id: str | None) -> WebSession:
    """Signs ``user_id`` in (None: the operator) on ``response``: a new token in the cookie,
    the browser's previous session (if any) ended. Call only after the credentials checked."""
    services = services_of(request)
    old = request.cookies.get(cookies.SESSION)
    if old and len(old) <= 200:
        for hashed in _hashes(request, old):
            await services.ledger.sessions.end_session(hashed)
    token = cookies.new_token()
    now = utcnow()
    lifetime = services.settings.session_lifetime
    if user_id is not None:
        hashed = token_hash(token)
    elif services.settings.admin_key is not None:
        hashed = operator_token_hash(token, services.settings.admin_key)
    else:
        raise ValueError("an operator session needs GATEWAY_ADMIN_KEY")
    session = WebSession(
        token_hash=hashed,
        user_id=user_id,
        csrf_token=cookies.new_token(),
        created_at=now,
        expires_at=now + timedelta(seconds=lifetime),
    )
    await services.ledger.sessions.create_session(session)
    cookies.set_cookie(request, response, cookies.SESSION, token, int(lifetime))
    request.state.web_session = session
    return session


async def end_current_session(request: Request, response: Response) -> None:
    """Signs the browser out: its session deleted, the cookie cleared."""
    token = request.cookies.get(cookies.SESSION)
    if token and len(token) <= 200:
        for hashed in _hashes(request, token):
            await services_of(request).ledger.sessions.end_session(hashed)
    cookies.clear_cookie(request, response, cookies.SESSION)
    request.state.web_session = None


def safe_next(value: str | None, default: str) -> str:
    """``value`` when it is a path on this site ("/portal/keys?x=1"), else ``default``: a
    sign-in never redirects to another site."""
    if value and value.startswith("/") and not value.startswith(("//", "/\\")):
        return value
    return default


def _here(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def _to_login(request: Request, login: str) -> PageExit:
    # Only a page comes back after sign-in: a form posted without a session is not replayed
    # (its target answers only POST).
    target = f"{login}?next={quote(_here(request), safe='')}" if request.method == "GET" else login
    return PageExit(RedirectResponse(target, status_code=303))


def forbidden(request: Request, message: str) -> PageExit:
    page = render(request, "error.html", {"title": "Not allowed", "message": message}, status=403)
    return PageExit(page)


async def require_user(request: Request) -> tuple[WebSession, User]:
    """The signed-in portal user and their session. Raises PageExit: a 303 to
    /portal/login?next=<this page> when no user is signed in (an operator session is not a
    user's)."""
    session = await current_session(request)
    if session is None or session.user_id is None:
        raise _to_login(request, "/portal/login")
    user = await services_of(request).ledger.directory.get_user(session.user_id)
    if user is None:
        raise _to_login(request, "/portal/login")
    return session, user


async def require_operator(request: Request) -> WebSession:
    """The operator's session. Raises PageExit: a 303 to /dashboard/login?next=<this page>
    when nobody is signed in, a 403 page when a portal user is."""
    session = await current_session(request)
    if session is None:
        raise _to_login(request, "/dashboard/login")
    if session.user_id is not None:
        raise forbidden(request, "The operator dashboard needs the operator's sign-in.")
    return session


async def check_csrf(request: Request, form: Mapping[str, Any]) -> None:
    """Raises PageExit (a 403 page) unless ``form["csrf_token"]`` is this browser's token:
    its session's, or before sign-in its ``gateway_csrf`` cookie's."""
    session = await current_session(request)
    expected = session.csrf_token if session is not None else request.cookies.get(cookies.CSRF)
    sent = form.get("csrf_token")
    if (
        not expected
        or not isinstance(sent, str)
        or not hmac.compare_digest(sent.encode(), expected.encode())
    ):
        raise forbidden(
            request,
            "This form has expired or did not come from this site. Reload the page and try again.",
        )
