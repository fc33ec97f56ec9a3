"""The operator's invitations to the portal (``GATEWAY_PORTAL_SIGNUP=invite``).

``POST /admin/invites {email?, expires_in_days?}`` and ``gateway invites create`` (rows of
gateway/actions.py) answer the invitation with its token, shown once, and the sign-up link
that carries it; only the token's SHA-256 is stored. An invitation admits one account, until
it expires (default 14 days); with ``email`` it admits only that address (any case).

An invitation is for someone new: one for the email of an existing user is refused (409
``email_has_user``), since signing up through it would make a second, empty account beside
theirs; the answer names the user, and their login link (login_links.py) gives them a login.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import timedelta
from typing import Any
from urllib.parse import quote

from gateway.errors import Conflict, Unprocessable
from gateway.ledger.base import Ledger
from gateway.portal.accounts import check_email, invite_hash
from gateway.records import AuditEvent, Invite, utcnow

DEFAULT_DAYS = 14
MAX_DAYS = 365
SIGNUP_PATH = "/portal/signup"

Json = dict[str, Any]


def signup_link(token: str, base_url: str | None) -> str:
    """The sign-up page with the invitation filled in (a path when no base URL is known)."""
    path = f"{SIGNUP_PATH}?invite={quote(token)}"
    return f"{base_url.rstrip('/')}{path}" if base_url else path


async def create_invite(
    ledger: Ledger, params: Mapping[str, Any], *, actor: str, base_url: str | None
) -> Json:
    """``params``: ``email`` (optional) and ``expires_in_days`` (1..365, default 14; a
    string from the CLI or a number). Raises 422 naming the parameter."""
    email = key = None
    if params.get("email") not in (None, ""):
        email, key = check_email(params["email"])
        await _refuse_existing(ledger, email, key)
    days = _days(params.get("expires_in_days"))
    token = "inv-" + secrets.token_urlsafe(24)
    invite = await ledger.logins.create_invite(
        invite_id="inv_" + secrets.token_hex(8),
        token_hash=invite_hash(token),
        email=email,
        email_key=key,
        created_by=actor,
        expires_at=utcnow() + timedelta(days=days),
        audit=lambda i: AuditEvent(
            actor=actor, action="invite.create", target=i.id, details={"email": i.email}
        ),
    )
    return {**invite_view(invite), "token": token, "url": signup_link(token, base_url)}


async def _refuse_existing(ledger: Ledger, email: str, key: str) -> None:
    login = await ledger.logins.find_login(key)
    found, _ = await ledger.directory.list_users(query=email, after=None, limit=100)
    owners = sorted(
        {u.id for u in found if (u.email or "").casefold() == key}
        | ({login.user_id} if login else set())
    )
    if owners:
        who = ", ".join(owners)
        raise Conflict(
            f"{email} is the email of user {who}: an invitation would make a second, empty "
            f"account. Give them a login link instead: gateway users login-link {owners[0]} "
            f"(POST /admin/users/{owners[0]}/login-link)",
            param="email",
            code="email_has_user",
        )


async def list_invites(ledger: Ledger, params: Mapping[str, Any]) -> Json:
    limit = whole_number(params.get("limit"), "limit", 50, 1, 200)
    offset = whole_number(params.get("offset"), "offset", 0, 0, 10**9)
    rows, more = await ledger.logins.list_invites(limit=limit, offset=offset)
    return {"data": [invite_view(i) for i in rows], "has_more": more}


def invite_view(invite: Invite) -> Json:
    """An invitation without its token (never stored)."""
    return {
        "id": invite.id,
        "email": invite.email,
        "created_by": invite.created_by,
        "created_at": invite.created_at.isoformat(),
        "expires_at": invite.expires_at.isoformat() if invite.expires_at else None,
        "used_at": invite.used_at.isoformat() if invite.used_at else None,
        "used_by": invite.used_by,
    }


def _days(value: object) -> int:
    return whole_number(value, "expires_in_days", DEFAULT_DAYS, 1, MAX_DAYS)


def whole_number(value: object, name: str, default: int, low: int, high: int) -> int:
    """``value`` (a number, or digits as the CLI and forms send them) in low..high, or
    ``default`` when absent; 422 naming ``name`` otherwise."""
    if value is None or value == "":
        return default
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise Unprocessable(
            f"{name} must be a whole number from {low} to {high}",
            param=name,
            code="invalid_parameter",
        )
    return value
