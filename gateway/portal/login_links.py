"""One-time login links: how an operator gives an existing user a portal login, in every
sign-up mode (closed included), and how a user who forgot their password gets back in.

``POST /admin/users/{id}/login-link {expires_in_hours?}`` and ``gateway users login-link <id>``
(rows of gateway/actions.py) answer the link (``$GATEWAY_PUBLIC_URL/portal/set-password?
token=...``) once; only the token's SHA-256 is stored, and a new link ends the user's older
unused ones. Its page (gateway/portal/signin.py) lets whoever holds it set the user's email
(prefilled) and password: the login is attached to that user (no new user, no welcome
credit), or its email and password replaced, and every browser signed in as the user is
signed out. A link works once, for ``expires_in_hours`` (default 72).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import timedelta
from typing import Any
from urllib.parse import quote

from gateway.errors import Conflict, Forbidden, NotFound
from gateway.ledger.base import DuplicateEmail, Ledger, LinkRefused, UnknownUser
from gateway.portal.accounts import PortalAccounts, check_email, invite_hash
from gateway.portal.invites import whole_number
from gateway.portal.passwords import check_password
from gateway.records import AuditEvent, Login, LoginLink, utcnow

PATH = "/portal/set-password"
DEFAULT_HOURS = 72
MAX_HOURS = 30 * 24

Json = dict[str, Any]


def link_url(token: str, base_url: str | None) -> str:
    """The set-password page with the token filled in (a path when no base URL is known)."""
    path = f"{PATH}?token={quote(token)}"
    return f"{base_url.rstrip('/')}{path}" if base_url else path


async def create_login_link(
    ledger: Ledger, user_id: str, params: Mapping[str, Any], *, actor: str, base_url: str | None
) -> Json:
    """``params``: ``expires_in_hours`` (1..720, default 72). Answers ``{user_id, email,
    has_login, url, token, expires_at}``, the token in this answer only. Raises 404
    ``user_not_found``, 422 naming ``expires_in_hours``."""
    hours = whole_number(
        params.get("expires_in_hours"), "expires_in_hours", DEFAULT_HOURS, 1, MAX_HOURS
    )
    token = "lnk-" + secrets.token_urlsafe(24)
    try:
        link = await ledger.logins.create_login_link(
            link_id="lnk_" + secrets.token_hex(8),
            token_hash=invite_hash(token),
            user_id=user_id,
            created_by=actor,
            expires_at=utcnow() + timedelta(hours=hours),
            audit=lambda lk: AuditEvent(
                actor=actor, action="login_link.create", target=lk.user_id, details={"id": lk.id}
            ),
        )
    except UnknownUser as exc:
        raise NotFound(f"no user {user_id!r}", code="user_not_found") from exc
    login = await ledger.logins.get_login(user_id)
    return {
        "user_id": user_id,
        "email": await prefill(ledger, link),
        "has_login": login is not None,
        "url": link_url(token, base_url),
        "token": token,
        "expires_at": link.expires_at.isoformat(),
    }


async def open_link(ledger: Ledger, token: str) -> LoginLink:
    """The usable link of ``token``; 403 ``link_refused`` otherwise."""
    link = await ledger.logins.find_login_link(invite_hash(token), now=utcnow()) if token else None
    if link is None:
        raise _refused()
    return link


async def prefill(ledger: Ledger, link: LoginLink) -> str | None:
    """The email the page offers: the login's, else the user's (None: neither has one)."""
    login = await ledger.logins.get_login(link.user_id)
    if login is not None:
        return login.email
    user = await ledger.directory.get_user(link.user_id)
    return user.email if user else None


async def use_link(accounts: PortalAccounts, token: str, email: object, password: object) -> Login:
    """Sets the link's user's login to ``email`` and ``password`` and ends every session of
    the user. Raises 403 ``link_refused``, 422 ``invalid_email`` / ``invalid_password``, 409
    ``email_taken`` (another account's login has the address); each changes nothing."""
    ledger = accounts.ledger
    await open_link(ledger, token)
    address, key = check_email(email)
    secret = check_password(password)
    try:
        login = await ledger.logins.use_login_link(
            invite_hash(token),
            email=address,
            email_key=key,
            password_hash=await accounts.passwords.hash(secret),
            audit=lambda lg: AuditEvent(
                actor=f"user:{lg.user_id}", action="login.set", target=lg.user_id
            ),
        )
    except LinkRefused as exc:  # used meanwhile, by another browser holding the same link
        raise _refused() from exc
    except DuplicateEmail as exc:
        raise Conflict(
            "another account's login uses this email: choose another one",
            param="email",
            code="email_taken",
        ) from exc
    await ledger.sessions.end_sessions_of(login.user_id)
    await accounts.throttle.succeeded(ledger.logins, key)
    return login


def _refused() -> Forbidden:
    return Forbidden(
        "this link is unknown, used, replaced by a newer one or expired: ask the operator for "
        "a new one",
        code="link_refused",
    )
