"""Customer-portal logins (the ``Logins`` port): accounts, invitations, failed log-ins.

The contract; its one implementation for both databases is login_store.py. Guarantees:

- One login per user and per email, whatever its case: ``email_key`` (the case-folded
  address, computed by the caller) is unique. A second sign-up with the same address raises
  ``DuplicateEmail`` and changes nothing.
- ``create_account`` writes the user, consumes the invitation (when given) and writes the
  login in one transaction: an invitation admits one account, and a refused invitation or a
  taken address leaves no user behind.
- ``set_password`` is a compare-and-set on the stored hash, so a rehash racing a password
  change never puts the old password back.
- A login link (``create_login_link``) is the only live one of its user: making it ends the
  user's older unused links. ``use_login_link`` consumes the link and sets the user's login
  (created, or its email and password replaced; ``welcome_credit`` kept, never granted anew)
  in one transaction: a link works once, and an email taken by another login leaves the link
  unused and the login as it was.
- Failed log-ins (and sign-ups, gateway/portal/throttle.py) are counted per scope;
  ``count_failure`` forgets the scope's failures older than ``since`` as it goes, so the
  table holds one window of rows per scope at most.

Errors (base.py): ``DuplicateEmail``, ``InviteRefused``, ``LinkRefused``, and the Directory's
``DuplicateUser`` / ``UnknownUser``. Passwords never reach the ledger, only their hashes.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from gateway.ledger.ports import Audited
from gateway.records import Invite, Login, LoginLink, User


class Logins(Protocol):
    """Portal logins, invitations and the log-in throttle's counters."""

    async def create_account(
        self,
        *,
        user_id: str,
        email: str,
        email_key: str,
        password_hash: str,
        welcome_credit: int,
        invite_hash: str | None = None,
        audit: Audited[Login] | None = None,
    ) -> tuple[User, Login]:
        """A new user (balance 0, ``email``) with its login, in one transaction; with
        ``invite_hash`` the invitation is consumed in it too. Raises ``DuplicateEmail``,
        ``InviteRefused``, ``DuplicateUser``; each leaves nothing behind."""

    async def add_login(
        self, user_id: str, *, email: str, email_key: str, password_hash: str
    ) -> Login:
        """A login for an existing user (no welcome credit). Raises ``UnknownUser``,
        ``DuplicateEmail`` (the address is taken, or the user has a login)."""

    async def find_login(self, email_key: str) -> Login | None: ...

    async def get_login(self, user_id: str) -> Login | None: ...

    async def set_password(
        self, user_id: str, *, password_hash: str, expected_hash: str, changed: bool
    ) -> bool:
        """Replaces ``expected_hash`` by ``password_hash``; False when the stored hash is no
        longer ``expected_hash``. ``changed``: a new password (``password_changed_at`` moves),
        not a rehash of the same one."""

    async def create_invite(
        self,
        *,
        invite_id: str,
        token_hash: str,
        email: str | None,
        email_key: str | None,
        created_by: str,
        expires_at: datetime | None,
        audit: Audited[Invite] | None = None,
    ) -> Invite: ...

    async def list_invites(self, *, limit: int, offset: int) -> tuple[list[Invite], bool]:
        """Newest first."""

    async def create_login_link(
        self,
        *,
        link_id: str,
        token_hash: str,
        user_id: str,
        created_by: str,
        expires_at: datetime,
        audit: Audited[LoginLink] | None = None,
    ) -> LoginLink:
        """A new link for ``user_id``; the user's older unused links stop working. Raises
        ``UnknownUser``."""

    async def find_login_link(self, token_hash: str, *, now: datetime) -> LoginLink | None:
        """The link, when it is unused and not expired at ``now``."""

    async def use_login_link(
        self,
        token_hash: str,
        *,
        email: str,
        email_key: str,
        password_hash: str,
        audit: Audited[Login] | None = None,
    ) -> Login:
        """Consumes the link and sets its user's login (created, or email and password
        replaced; ``password_changed_at`` moves). Raises ``LinkRefused`` (unknown, used,
        replaced or expired), ``DuplicateEmail`` (another user's login has the address); each
        changes nothing."""

    async def count_failure(self, scope: str, *, at: datetime, since: datetime) -> int:
        """Records a failure (a failed log-in, a sign-up) in ``scope`` at ``at``; answers the
        scope's failures at or after ``since`` (this one included). Serialised per scope, so
        concurrent calls each see the others: a limit cannot be overshot by a burst."""

    async def lock(self, scope: str, *, until: datetime) -> None:
        """Locks ``scope`` until ``until`` (an existing later lock is kept)."""

    async def lock_ends(self, scopes: Sequence[str], *, now: datetime) -> datetime | None:
        """The latest end of a lock on any of ``scopes`` still running at ``now``."""

    async def clear_failures(self, scope: str) -> None:
        """Forgets the scope's failures and lock (a successful log-in)."""
