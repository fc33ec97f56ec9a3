"""Customer accounts: sign-up, the welcome credit, log-in and password change.

Stateless but for its settings; the pages (and the demo) call it. Errors are the gateway's
(gateway/errors.py), each with a code the pages turn into a message:

    Forbidden      signup_closed, invite_required, invite_refused
    Conflict       email_taken, password_changed (a concurrent change won)
    Unprocessable  invalid_email, invalid_password
    Unauthorized   invalid_credentials (wrong email or password: never says which)
    RateLimited    too many failed log-ins, too many sign-ups from one address (throttle.py)

The welcome credit is a ``grant`` posted through the one money path (gateway/postings.py)
with the reference ``welcome:<user id>`` and the amount fixed at sign-up in the login, so it
is granted at most once: a sign-up cannot be replayed (the email is taken), and a grant a
crash cut off is posted again at the next log-in, where the ledger answers a replay with the
first entry.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass, field

from gateway.errors import Conflict, Forbidden, NotFound, Unauthorized, Unprocessable
from gateway.ledger.base import DuplicateEmail, DuplicateUser, InviteRefused, Ledger, UnknownUser
from gateway.metering.store import BalanceStore
from gateway.portal.passwords import Passwords, check_password
from gateway.portal.throttle import SignupLimit, Throttle
from gateway.postings import Postings
from gateway.records import AuditEvent, Entry, Login, User, utcnow

SIGNUP_MODES = ("closed", "open", "invite")
ACTOR = "portal"
MAX_EMAIL = 254
MAX_LOCAL = 64
# Syntax only: the address is proven only by mail, which the gateway does not send, so this
# catches typos and markup, not liars. One @; a local part of letters, digits and
# ``.!#$%&*+/=?^_{|}~-`` (no quotes, angle brackets, spaces or control characters) without
# a leading, trailing or doubled dot; a domain of dot-separated labels of letters, digits
# and inner hyphens, ending in a label of two letters or more (or a punycode one). Letters
# may be any script's.
_LOCAL = re.compile(r"^[\w!#$%&*+/=?^{|}~-]+(?:\.[\w!#$%&*+/=?^{|}~-]+)*\Z")
_DOMAIN = re.compile(r"^(?:[^\W_](?:[\w-]*[^\W_])?\.)+(?:[^\W\d_]{2,}|xn--[^\W_][\w-]*)\Z")


def check_email(value: object, *, param: str = "email") -> tuple[str, str]:
    """(the address as typed, stripped; its case-folded key), or 422 ``invalid_email``."""
    email = value.strip() if isinstance(value, str) else ""
    local, at, domain = email.rpartition("@")
    if (
        not at
        or len(email) > MAX_EMAIL
        or len(local) > MAX_LOCAL
        or not _LOCAL.fullmatch(local)
        or not _DOMAIN.fullmatch(domain)
    ):
        raise Unprocessable(
            "this is not an email address: write it as name@example.com, without spaces, "
            "quotes or angle brackets",
            param=param,
            code="invalid_email",
        )
    return email, email.casefold()


def invite_hash(token: str) -> str:
    """Invitation tokens are 192-bit random strings: an unsalted SHA-256 is enough to store
    them (no dictionary to attack), as for API keys."""
    return hashlib.sha256(token.encode()).hexdigest()


def welcome_reference(user_id: str) -> str:
    return f"welcome:{user_id}"


@dataclass(frozen=True)
class PortalAccounts:
    ledger: Ledger
    store: BalanceStore
    passwords: Passwords
    signup: str = "closed"
    welcome_credit: int = 0  # nano-USD
    throttle: Throttle = field(default_factory=Throttle)
    signups: SignupLimit = field(default_factory=SignupLimit)

    async def sign_up(
        self,
        email: object,
        password: object,
        *,
        invite: str | None = None,
        address: str | None = None,
    ) -> User:
        """A new user with a login, granted the welcome credit. The invitation (``invite``
        mode) is consumed in the same transaction as the account. Open sign-ups are counted
        per client ``address`` (``signups``): every well-formed attempt counts, taken
        addresses included, so neither credit farming nor probing for accounts goes faster
        than the limit. Raises as the module says; a refusal creates nothing."""
        if self.signup not in ("open", "invite"):
            raise Forbidden(
                "sign-up is closed: ask the operator for an account", code="signup_closed"
            )
        if self.signup == "invite" and not invite:
            raise Forbidden("sign-up needs an invitation", code="invite_required")
        typed, key = check_email(email)
        secret = check_password(password)
        if self.signup == "open":
            # Invited sign-ups need no limit: each needs a token only the operator hands out.
            await self.signups.admit(self.ledger.logins, address, now=utcnow())
        user_id = "user_" + secrets.token_hex(6)
        welcome = self.welcome_credit
        try:
            _, login = await self.ledger.logins.create_account(
                user_id=user_id,
                email=typed,
                email_key=key,
                password_hash=await self.passwords.hash(secret),
                welcome_credit=welcome,
                # Open sign-up ignores an invitation: it would only be used up for nothing.
                invite_hash=invite_hash(invite) if invite and self.signup == "invite" else None,
                audit=lambda lg: AuditEvent(
                    actor=ACTOR,
                    action="user.signup",
                    target=lg.user_id,
                    amount=welcome or None,
                    details={"invited": self.signup == "invite"},
                ),
            )
        except DuplicateEmail as exc:
            # Said plainly (log-in never says it): without mail to prove an address, a neutral
            # answer would leave its owner unsure whether they have an account. ``signups``
            # bounds how fast anyone can ask.
            raise Conflict(
                "an account with this email exists: log in instead (forgot the password? the "
                "operator can give you a link to set a new one)",
                param="email",
                code="email_taken",
            ) from exc
        except InviteRefused as exc:
            raise Forbidden(
                "this invitation is unknown, used, expired or for another address",
                code="invite_refused",
            ) from exc
        except DuplicateUser as exc:  # 48 random bits collided: the user may simply retry
            raise Conflict("please try again", code="retry") from exc
        await self.grant_welcome(login)
        return await self._user(user_id)

    async def grant_welcome(self, login: Login) -> Entry | None:
        """Posts the login's welcome credit (idempotent by its reference); None when it has
        none."""
        if login.welcome_credit <= 0:
            return None
        return await Postings(self.ledger.journal, self.store).post(
            login.user_id,
            kind="grant",
            amount=login.welcome_credit,
            reference=welcome_reference(login.user_id),
            reason="welcome credit",
            actor=ACTOR,
        )

    async def log_in(self, email: object, password: object, *, address: str | None) -> User:
        """The user whose login this is, when the password matches and neither the email nor
        the client ``address`` is locked out. Every failure looks the same to the caller."""
        key = email.strip().casefold() if isinstance(email, str) else ""
        secret = password if isinstance(password, str) else ""
        now = utcnow()
        await self.throttle.check(self.ledger.logins, key, address, now=now)
        login = await self.ledger.logins.find_login(key) if key else None
        # Checked against a dummy hash when there is no login: the same time either way.
        ok = await self.passwords.verify(login.password_hash if login else None, secret[:1024])
        if login is None or not ok:
            await self.throttle.failed(self.ledger.logins, key, address, now=now)
            raise Unauthorized("wrong email or password", code="invalid_credentials")
        await self.throttle.succeeded(self.ledger.logins, key)
        if self.passwords.needs_rehash(login.password_hash):
            await self.ledger.logins.set_password(
                login.user_id,
                password_hash=await self.passwords.hash(secret),
                expected_hash=login.password_hash,
                changed=False,
            )
        await self.grant_welcome(login)
        return await self._user(login.user_id)

    async def change_password(self, user_id: str, current: object, new: object) -> Login:
        """Replaces the password after checking the current one (a wrong one counts as a
        failed log-in of that email). The caller ends the user's other sessions."""
        login = await self.ledger.logins.get_login(user_id)
        if login is None:
            raise NotFound("this user has no portal login", code="login_not_found")
        key = login.email.casefold()
        now = utcnow()
        await self.throttle.check(self.ledger.logins, key, None, now=now)
        secret = check_password(new, param="new_password")
        given = current if isinstance(current, str) else ""
        if not await self.passwords.verify(login.password_hash, given[:1024]):
            await self.throttle.failed(self.ledger.logins, key, None, now=now)
            raise Unauthorized(
                "the current password is wrong",
                param="current_password",
                code="invalid_credentials",
            )
        changed = await self.ledger.logins.set_password(
            user_id,
            password_hash=await self.passwords.hash(secret),
            expected_hash=login.password_hash,
            changed=True,
        )
        if not changed:
            raise Conflict("the password was changed meanwhile", code="password_changed")
        await self.ledger.audit.record_audit(
            AuditEvent(actor=f"user:{user_id}", action="password.change", target=user_id)
        )
        found = await self.ledger.logins.get_login(user_id)
        assert found is not None
        return found

    async def add_login(self, user_id: str, email: object, password: object) -> Login:
        """A login for an existing user (the demo user; an operator's user). Raises 404
        ``user_not_found``, 409 ``email_taken``."""
        address, key = check_email(email)
        secret = check_password(password)
        try:
            return await self.ledger.logins.add_login(
                user_id,
                email=address,
                email_key=key,
                password_hash=await self.passwords.hash(secret),
            )
        except UnknownUser as exc:
            raise NotFound(f"no user {user_id!r}", code="user_not_found") from exc
        except DuplicateEmail as exc:
            raise Conflict(
                "this email or this user has a portal login already", code="email_taken"
            ) from exc

    async def _user(self, user_id: str) -> User:
        user = await self.ledger.directory.get_user(user_id)
        if user is None:
            raise NotFound(f"no user {user_id!r}", code="user_not_found")
        return user
