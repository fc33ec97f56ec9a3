"""Server-rendered pages: Jinja2 templates from gateway/pages/templates, autoescaped.

``render`` gives every template ``session`` (the signed-in WebSession or None), ``csrf_token``
(to put in every POST form as ``<input type=hidden name=csrf_token>``), ``path`` (the
request's path, for the navigation), and ``error`` / ``notice`` (None unless the handler
passes them; base.html shows them). Filters: ``usd`` (nano-USD int -> "$1.50"), ``when``
(datetime -> "2024-05-01 12:00 UTC"). Responses carry a strict Content-Security-Policy: scripts,
styles and images only from this site (so nothing can come from a CDN), no framing.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from gateway.money import format_usd
from gateway.pages import cookies
from gateway.records import WebSession

SECURITY_HEADERS = {
    # No form-action: the portal's checkout form is answered with a redirect to Stripe.
    "content-security-policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self';"
        " object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}


def usd(nanos: int) -> str:
    """nano-USD -> "$1.50" / "-$0.000125" (format_usd's digits: exact, never rounded)."""
    text = format_usd(nanos)
    return f"-${text[1:]}" if text.startswith("-") else f"${text}"


def when(value: datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("gateway.pages", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["usd"] = usd
    env.filters["when"] = when
    return env


ENV = _environment()


def session_of(request: Request) -> WebSession | None:
    """The session ``sessions.current_session`` found for this request (None before)."""
    found: WebSession | None = getattr(request.state, "web_session", None)
    return found


def render(
    request: Request, name: str, context: Mapping[str, Any], *, status: int = 200
) -> HTMLResponse:
    """The template ``name`` (e.g. "dashboard/home.html") rendered with ``context`` plus the
    names above. Raises jinja2's errors for a missing template or an undefined name."""
    session = session_of(request)
    fresh_csrf = None
    if session is not None:
        csrf = session.csrf_token
    else:
        csrf, is_new = cookies.pre_session_csrf(request)
        fresh_csrf = csrf if is_new else None
    html = ENV.get_template(name).render(
        {
            "error": None,
            "notice": None,
            **context,
            "session": session,
            "csrf_token": csrf,
            "path": request.url.path,
        }
    )
    response = HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)
    if fresh_csrf is not None:
        cookies.set_cookie(request, response, cookies.CSRF, fresh_csrf, None)
    return response
