"""The Ledger, the durable truth about users, keys, money and usage, and its error tree.

A ``Ledger`` is six repositories (ports.py) over one ``Database`` (database.py); build it with
``gateway.ledger.open_ledger(url)``. Callers take the repository they need::

    await ledger.directory.get_user("alice")
    await ledger.journal.post_entry("alice", kind="grant", amount=10**9, reference="grant:1")

Errors::

    LedgerError
    ├── UnknownUser (also a LookupError)   no such user
    ├── DuplicateUser                      the user id exists
    ├── InsufficientFunds                  a non-usage debit beyond the balance
    ├── ReferenceConflict                  a reference already names another movement
    ├── DuplicateEmail                     a portal login with this email exists (logins.py)
    ├── InviteRefused                      no usable portal invitation (logins.py)
    └── LinkRefused                        no usable portal login link (logins.py)
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.ledger.database import Database
from gateway.ledger.logins import Logins
from gateway.ledger.ports import Audit, Directory, Journal, Payments, Reports
from gateway.ledger.support_ports import Sessions, UsageStorage, Webhooks
from gateway.records import ENTRY_KINDS, Entry


@dataclass(frozen=True)
class Ledger:
    database: Database
    directory: Directory
    journal: Journal
    audit: Audit
    reports: Reports
    payments: Payments
    webhooks: Webhooks
    logins: Logins
    sessions: Sessions
    usage_storage: UsageStorage

    async def open(self) -> None:
        """Connects and migrates (``open_ledger`` does it for you)."""
        await self.database.open()

    async def close(self) -> None:
        await self.database.close()

    async def ping(self) -> None:
        """Raises when the database cannot answer."""
        await self.database.ping()


class LedgerError(Exception):
    pass


class UnknownUser(LedgerError, LookupError):
    pass


class DuplicateUser(LedgerError):
    pass


class InsufficientFunds(LedgerError):
    pass


class ReferenceConflict(LedgerError):
    """A reference already names a different movement (another user, kind or amount)."""


class DuplicateEmail(LedgerError):
    """A portal login with this email (in any case) exists, or the user has one already."""


class InviteRefused(LedgerError):
    """No usable invitation: unknown token, already used, expired, or for another address."""


class LinkRefused(LedgerError):
    """No usable login link: unknown token, already used or replaced, or expired."""


def check_kind(kind: str) -> None:
    """Refused before any SQL: a database CHECK error would leak as a raw driver exception."""
    if kind not in ENTRY_KINDS:
        raise ValueError(f"ledger entry kind must be one of {', '.join(ENTRY_KINDS)}, not {kind!r}")


def replayed(existing: Entry, user_id: str, kind: str, amount: int | None) -> Entry:
    """The first entry of a replayed reference, if the replay asks for the same movement.

    A reference reused for something else is a bug upstream of the ledger; answering it with
    the old entry would report money as moved when it was not, so it is refused loudly.
    ``amount`` is None where the amount depends on the balance (set balance, capped debit).
    """
    if (
        existing.user_id != user_id
        or existing.kind != kind
        or (amount is not None and existing.amount != amount)
    ):
        raise ReferenceConflict(
            f"reference {existing.reference!r} already moved {existing.amount} ({existing.kind})"
            f" for user {existing.user_id!r}"
        )
    return existing
