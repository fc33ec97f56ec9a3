"""Sign up, log in, log out, the password change and the operator's login link, as pages.

Signing in (after a sign-up or a log-in) always opens a new session under a new token
(``sessions.start_session``), so a session token planted before sign-in is worthless. A
password change ends every other session of the user; the browser that made it stays
signed in.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from gateway.errors import GatewayError, Unprocessable
from gateway.money import format_usd
from gateway.pages import sessions
from gateway.portal import login_links
from gateway.portal.common import (
    HOME,
    client_address,
    failed,
    page,
    portal_accounts,
    posted,
    signed_in,
)
from gateway.records import LoginLink
from gateway.web import services_of

SIGNUP_FIELDS = {"email": "email", "password": "password", "confirm": "confirm"}
ACCOUNT_FIELDS = {
    "current_password": "current_password",
    "new_password": "new_password",
    "confirm": "confirm",
}


async def signup_form(request: Request) -> Response:
    return page(request, "signup.html", _signup_context(request))


def _signup_context(request: Request, **given: str) -> dict[str, object]:
    settings = services_of(request).settings
    return {
        "mode": settings.portal_signup,
        "welcome": format_usd(settings.portal_welcome_credit)
        if settings.portal_welcome_credit
        else None,
        "invite": given.get("invite", request.query_params.get("invite", "")),
        "email": given.get("email", ""),
    }


async def signup(request: Request) -> Response:
    form = await posted(request)
    context = _signup_context(request, invite=form.get("invite", ""), email=form.get("email", ""))
    try:
        if form.get("password", "") != form.get("confirm", ""):
            raise Unprocessable(
                "the two passwords differ: type the same one twice", param="confirm"
            )
        user = await portal_accounts(request).sign_up(
            form.get("email"),
            form.get("password"),
            invite=form.get("invite") or None,
            address=client_address(request),
        )
    except GatewayError as exc:
        return failed(request, "signup.html", context, exc, fields=SIGNUP_FIELDS)
    response = RedirectResponse(f"{HOME}?welcome=1", status_code=303)
    await sessions.start_session(request, response, user_id=user.id)
    return response


async def login_form(request: Request) -> Response:
    target = sessions.safe_next(request.query_params.get("next"), HOME)
    session = await sessions.current_session(request)
    if session is not None and session.user_id is not None:
        return RedirectResponse(target, status_code=303)
    return page(request, "login.html", _login_context(request, target, ""))


def _login_context(request: Request, target: str, email: str) -> dict[str, object]:
    return {"next": target, "email": email, "mode": services_of(request).settings.portal_signup}


async def login(request: Request) -> Response:
    form = await posted(request)
    target = sessions.safe_next(form.get("next"), HOME)
    context = _login_context(request, target, form.get("email", ""))
    try:
        user = await portal_accounts(request).log_in(
            form.get("email"), form.get("password"), address=client_address(request)
        )
    except GatewayError as exc:
        return failed(request, "login.html", context, exc)
    response = RedirectResponse(target, status_code=303)
    await sessions.start_session(request, response, user_id=user.id)
    return response


async def logout(request: Request) -> Response:
    await posted(request)
    response = RedirectResponse("/portal/login", status_code=303)
    await sessions.end_current_session(request, response)
    return response


async def account(request: Request) -> Response:
    _, user = await signed_in(request)
    login = await services_of(request).ledger.logins.get_login(user.id)
    return page(request, "account.html", {"user": user, "login": login})


async def change_password(request: Request) -> Response:
    session, user = await signed_in(request)
    form = await posted(request)
    ledger = services_of(request).ledger
    try:
        if form.get("new_password", "") != form.get("confirm", ""):
            raise Unprocessable(
                "the two new passwords differ: type the same one twice", param="confirm"
            )
        login = await portal_accounts(request).change_password(
            user.id, form.get("current_password"), form.get("new_password")
        )
    except GatewayError as exc:
        unchanged = await ledger.logins.get_login(user.id)
        context = {"user": user, "login": unchanged}
        return failed(request, "account.html", context, exc, fields=ACCOUNT_FIELDS)
    # Whoever else holds a session (a stolen cookie, a forgotten browser) is signed out.
    await ledger.sessions.end_sessions_of(user.id, except_token_hash=session.token_hash)
    notice = "Password changed. Every other sign-in of this account was ended."
    return page(request, "account.html", {"user": user, "login": login, "notice": notice})


async def set_password_form(request: Request) -> Response:
    """The page of an operator's login link (login_links.py): email prefilled."""
    token = request.query_params.get("token", "")
    ledger = services_of(request).ledger
    try:
        link = await login_links.open_link(ledger, token)
    except GatewayError as exc:
        return failed(request, "set_password.html", {"token": ""}, exc)
    return page(request, "set_password.html", await _link_context(request, token, link))


async def _link_context(
    request: Request, token: str, link: LoginLink, email: str | None = None
) -> dict[str, object]:
    ledger = services_of(request).ledger
    login = await ledger.logins.get_login(link.user_id)
    if email is None:
        email = await login_links.prefill(ledger, link)
    return {"token": token, "user_id": link.user_id, "email": email or "", "has_login": bool(login)}


async def set_password(request: Request) -> Response:
    """Sets the login through the link, then signs this browser in (every other session of
    the user was ended)."""
    form = await posted(request)
    token = form.get("token", "")
    ledger = services_of(request).ledger
    try:
        link = await login_links.open_link(ledger, token)
    except GatewayError as exc:
        return failed(request, "set_password.html", {"token": ""}, exc)
    try:
        if form.get("password", "") != form.get("confirm", ""):
            raise Unprocessable(
                "the two passwords differ: type the same one twice", param="confirm"
            )
        login = await login_links.use_link(
            portal_accounts(request), token, form.get("email"), form.get("password")
        )
    except GatewayError as exc:
        context = await _link_context(request, token, link, form.get("email", ""))
        if exc.code == "link_refused":
            context = {"token": ""}
        return failed(request, "set_password.html", context, exc, fields=SIGNUP_FIELDS)
    response = RedirectResponse(f"{HOME}?login_set=1", status_code=303)
    await sessions.start_session(request, response, user_id=login.user_id)
    return response
