"""The Ledger port: the durable truth about users, keys, balances and usage.

Guarantees every implementation gives (checked by tests/ledger/test_contract.py):

- Atomicity: a balance change and its ledger entry commit together or not at all.
- Invariant: for every user, ``users.balance == sum(ledger_entries.amount)``; every entry
  stores the balance right after it.
- Idempotency: an entry's ``reference`` is unique; posting the same reference twice returns
  the first entry (``created=False``) and moves no money. ``write_usage`` inserts a usage
  record at most once per ``request_id`` and debits only the records it inserted.
- Balances may go below zero only through usage (a call that cost more than reserved is
  still billed: nothing is free); operator and payment entries never make money from nothing.
- Amounts are ``int`` nano-USD; timestamps are timezone-aware UTC datetimes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from gateway.ledger.reports import ReportsLedger
from gateway.records import ENTRY_KINDS, ApiKey, AuditEvent, Entry, UsageRecord, User


class Ledger(ReportsLedger, Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raises when the database cannot answer."""

    async def create_user(self, *, user_id: str, email: str | None) -> User:
        """Raises ``DuplicateUser`` when the id exists."""

    async def get_user(self, user_id: str) -> User | None: ...

    async def create_key(
        self, user_id: str, *, key_id: str, key_hash: str, prefix: str, name: str | None
    ) -> ApiKey: ...

    async def list_keys(self, user_id: str) -> list[ApiKey]: ...

    async def revoke_key(self, key_id: str) -> ApiKey | None:
        """Marks the key revoked (idempotent); None when there is no such key."""

    async def find_key(self, key_hash: str) -> tuple[ApiKey, User] | None: ...

    async def post_entry(
        self,
        user_id: str,
        *,
        kind: str,
        amount: int,
        reference: str,
        reason: str | None = None,
        actor: str | None = None,
    ) -> Entry:
        """Moves ``amount`` (signed) into the user's balance. Idempotent on ``reference``.

        Raises ``UnknownUser`` for a missing user and ``InsufficientFunds`` when a negative
        non-usage amount would take the balance below zero.
        """

    async def set_balance(
        self, user_id: str, *, balance: int, reference: str, reason: str | None, actor: str | None
    ) -> Entry:
        """Sets the balance by one ``adjustment`` entry for the difference, atomically."""

    async def write_usage(self, records: Sequence[UsageRecord]) -> list[str]:
        """Inserts the records not yet present and debits their cost, in one transaction.

        Returns the request ids actually inserted (replays are skipped).
        """

    async def list_usage(
        self, user_id: str, *, limit: int, offset: int
    ) -> tuple[list[UsageRecord], bool]:
        """Newest first; returns (rows, has_more)."""

    async def list_entries(self, user_id: str) -> list[Entry]:
        """Oldest first."""

    async def entries_after(self, user_id: str, version: int) -> list[Entry]:
        """The user's entries whose version is above ``version``, oldest first."""

    async def balance(self, user_id: str) -> tuple[int, int] | None:
        """(balance, version) where version grows with every balance change."""

    async def record_audit(self, event: AuditEvent) -> None: ...

    async def list_audit(
        self, *, target: str | None, action: str | None, limit: int, offset: int
    ) -> tuple[list[AuditEvent], bool]:
        """Newest first."""


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
