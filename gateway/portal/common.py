"""What every portal page shares: the signed-in user, the account services, POST forms with
their CSRF check, the navigation and rendering.

A page acts only on the signed-in user's own records: every key, usage row and payment it
reads or changes is looked up with the session's user id, never with an id from the request
alone (another user's key id answers 404, as on /me/keys).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse

from gateway.accounts import Accounts
from gateway.errors import GatewayError
from gateway.pages import sessions
from gateway.pages.forms import read_form
from gateway.pages.templating import render
from gateway.portal.accounts import PortalAccounts
from gateway.portal.passwords import Passwords
from gateway.portal.throttle import SignupLimit
from gateway.records import User, WebSession
from gateway.web import services_of

HOME = "/portal"
NAV = (
    ("/portal", "Overview"),
    ("/portal/keys", "Keys"),
    ("/portal/usage", "Usage"),
    ("/portal/billing", "Buy credit"),
    ("/portal/quickstart", "Quick start"),
    ("/portal/account", "Account"),
)


def actor(user: User) -> str:
    """The audit trail's name for a user acting on their own account (as /me does)."""
    return f"user:{user.id}"


def accounts(request: Request) -> Accounts:
    services = services_of(request)
    return Accounts(services.ledger, services.store, services.auth)


def portal_accounts(request: Request) -> PortalAccounts:
    services = services_of(request)
    state = request.app.state
    # One hasher per app: making one hashes a dummy password (argon2 work worth sharing).
    passwords: Passwords | None = getattr(state, "portal_passwords", None)
    if passwords is None:
        passwords = state.portal_passwords = Passwords()
    return PortalAccounts(
        services.ledger,
        services.store,
        passwords,
        signup=services.settings.portal_signup,
        welcome_credit=services.settings.portal_welcome_credit,
        signups=SignupLimit(
            services.settings.portal_signup_limit, services.settings.portal_signup_window
        ),
    )


def client_address(request: Request) -> str | None:
    """The client's address (uvicorn puts a trusted proxy's forwarded one here)."""
    return request.client.host if request.client else None


async def signed_in(request: Request) -> tuple[WebSession, User]:
    """The signed-in user; a 303 to the log-in page otherwise (PageExit)."""
    return await sessions.require_user(request)


async def posted(request: Request) -> dict[str, str]:
    """The POST form, once its CSRF token is checked (a 403 page otherwise)."""
    form = await read_form(request)
    await sessions.check_csrf(request, form)
    return form


def page(
    request: Request, name: str, context: Mapping[str, Any], *, status: int = 200
) -> HTMLResponse:
    """Renders portal/<name> with the navigation. ``invalid`` (a field's id) and
    ``field_error`` (its message) are None unless ``failed`` sets them (portal/fields.html
    shows them beside the field)."""
    return render(
        request,
        f"portal/{name}",
        {"nav": NAV, "invalid": None, "field_error": None, **context},
        status=status,
    )


def failed(
    request: Request,
    name: str,
    context: Mapping[str, Any],
    exc: GatewayError,
    *,
    fields: Mapping[str, str] | None = None,
) -> HTMLResponse:
    """The page again with the refusal's message, under the refusal's status: beside the
    field when ``fields`` maps the refusal's ``param`` to a field id of the page, else at the
    top."""
    field = (fields or {}).get(exc.param or "")
    shown = {"invalid": field, "field_error": exc.message} if field else {"error": exc.message}
    response = page(request, name, {**context, **shown}, status=exc.status)
    for header, value in exc.headers:
        response.headers[header.decode()] = value.decode()
    return response
