"""The web pages' cookies and their flags.

``gateway_session`` carries the session token (gateway/pages/sessions.py). ``gateway_csrf``
carries the CSRF token of a browser not signed in yet, so the sign-in and sign-up forms are
protected too (double submit: the form's token must equal the cookie's; another site can
neither read the cookie nor set it).

Every cookie is HttpOnly, SameSite=Lax and Path=/, and Secure when the request arrived over
HTTPS: its scheme is https, which uvicorn also sets from ``X-Forwarded-Proto`` when the
request comes from a trusted proxy (``--forwarded-allow-ips`` / ``FORWARDED_ALLOW_IPS``,
127.0.0.1 by default).
"""

from __future__ import annotations

import secrets

from starlette.requests import Request
from starlette.responses import Response

SESSION = "gateway_session"
CSRF = "gateway_csrf"
_TOKEN_BYTES = 32


def new_token() -> str:
    """A fresh random token (256 bits, URL-safe text)."""
    return secrets.token_urlsafe(_TOKEN_BYTES)


def is_https(request: Request) -> bool:
    return request.url.scheme == "https"


def set_cookie(
    request: Request, response: Response, name: str, value: str, max_age: int | None
) -> None:
    """Sets ``name`` with the flags above; ``max_age`` None: until the browser closes."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        secure=is_https(request),
        httponly=True,
        samesite="lax",
    )


def clear_cookie(request: Request, response: Response, name: str) -> None:
    response.delete_cookie(name, path="/", secure=is_https(request), httponly=True, samesite="lax")


def pre_session_csrf(request: Request) -> tuple[str, bool]:
    """The CSRF token of a browser without a session, and whether it is new (the response
    must then set it with ``set_cookie``). Stable within a request."""
    known: tuple[str, bool] | None = getattr(request.state, "pre_session_csrf", None)
    if known is None:
        cookie = request.cookies.get(CSRF, "")
        usable = 20 <= len(cookie) <= 100 and cookie.replace("-", "").replace("_", "").isalnum()
        known = (cookie, False) if usable else (new_token(), True)
        request.state.pre_session_csrf = known
    return known
