"""The money (the ``Journal`` port): every balance change of the gateway goes through here.

The flow of a movement is written once, below; what really differs between the databases is
behind ``MoneyStatements`` (sqlite.py, postgres.py): how the user's row is locked, the
statement that moves the balance and writes its entry, and the set-based usage debit.
Guarantees: ports.py.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from gateway.ledger.audit import write_audit
from gateway.ledger.base import InsufficientFunds, UnknownUser, check_kind, replayed
from gateway.ledger.database import Database, Row, Transaction
from gateway.ledger.ports import Audited
from gateway.records import Entry, UsageRecord

ENTRY_BY_REFERENCE = "SELECT * FROM ledger_entries WHERE reference = $1"


class MoneyStatements(Protocol):
    """A dialect's money statements; ``lock_user`` and ``move`` run inside one transaction."""

    async def lock_user(self, tx: Transaction, user_id: str) -> int | None:
        """The user's balance, the row locked until commit; None for an unknown user."""

    async def move(
        self,
        tx: Transaction,
        user_id: str,
        *,
        kind: str,
        amount: int,
        reference: str,
        reason: str | None,
        actor: str | None,
    ) -> Row:
        """Adds ``amount`` to the locked user's balance, bumps their version by one and
        inserts the entry with the new balance and version; answers the entry's row."""

    def reference_taken(self, error: Exception) -> bool:
        """Whether ``error`` is the unique reference refusing a concurrent post."""

    async def write_usage(self, records: Sequence[UsageRecord]) -> list[str]:
        """``Journal.write_usage``, in one transaction."""


class SqlJournal:
    def __init__(self, db: Database, money: MoneyStatements) -> None:
        self._db = db
        self._money = money

    async def post_entry(
        self,
        user_id: str,
        *,
        kind: str,
        amount: int,
        reference: str,
        reason: str | None = None,
        actor: str | None = None,
        audit: Audited[Entry] | None = None,
    ) -> Entry:
        return await self._move(
            user_id, kind, lambda _: amount, reference, reason, actor, exact=amount, audit=audit
        )

    async def set_balance(
        self,
        user_id: str,
        *,
        balance: int,
        reference: str,
        reason: str | None,
        actor: str | None,
        audit: Audited[Entry] | None = None,
    ) -> Entry:
        return await self._move(
            user_id,
            "adjustment",
            lambda current: balance - current,
            reference,
            reason,
            actor,
            audit=audit,
        )

    async def debit_up_to(
        self,
        user_id: str,
        *,
        kind: str,
        amount: int,
        reference: str,
        reason: str | None,
        actor: str | None,
        audit: Audited[Entry] | None = None,
    ) -> Entry:
        return await self._move(
            user_id,
            kind,
            lambda current: -min(amount, max(current, 0)),
            reference,
            reason,
            actor,
            audit=audit,
        )

    async def _move(
        self,
        user_id: str,
        kind: str,
        amount_for: Callable[[int], int],
        reference: str,
        reason: str | None,
        actor: str | None,
        *,
        exact: int | None = None,
        audit: Audited[Entry] | None,
    ) -> Entry:
        """The one function that moves money. ``amount_for`` gets the balance read under the
        user's lock, so no settlement can land between reading it and moving; ``exact`` is the
        amount a replay of ``reference`` must match (None where it depends on the balance)."""
        check_kind(kind)
        try:
            async with self._db.transaction() as tx:
                balance = await self._money.lock_user(tx, user_id)
                # Looked up after the lock: a post of this reference that committed while we
                # waited is seen here (PostgreSQL: READ COMMITTED snapshots per statement).
                existing = await tx.fetchrow(ENTRY_BY_REFERENCE, reference)
                if existing is not None:
                    return replayed(entry(existing, created=False), user_id, kind, exact)
                if balance is None:
                    raise UnknownUser(user_id)
                amount = amount_for(balance)
                # Invariant: only usage may take a balance below zero (nothing is free).
                if kind != "usage" and amount < 0 and balance + amount < 0:
                    raise InsufficientFunds(user_id)
                moved = entry(
                    await self._money.move(
                        tx,
                        user_id,
                        kind=kind,
                        amount=amount,
                        reference=reference,
                        reason=reason,
                        actor=actor,
                    )
                )
                if audit is not None:
                    await write_audit(tx, audit(moved))
                return moved
        except Exception as exc:
            # The same reference committed meanwhile for another user, whose lock we do not
            # hold: our transaction rolled back and the first entry stands.
            if not self._money.reference_taken(exc):
                raise
            first = await self._db.fetchrow(ENTRY_BY_REFERENCE, reference)
            if first is None:
                raise
            return replayed(entry(first, created=False), user_id, kind, exact)

    async def write_usage(self, records: Sequence[UsageRecord]) -> list[str]:
        return await self._money.write_usage(records)

    async def balance(self, user_id: str) -> tuple[int, int] | None:
        row = await self._db.fetchrow("SELECT balance, version FROM users WHERE id = $1", user_id)
        return (row["balance"], row["version"]) if row else None

    async def list_entries(self, user_id: str) -> list[Entry]:
        rows = await self._db.fetch(
            "SELECT * FROM ledger_entries WHERE user_id = $1 ORDER BY id", user_id
        )
        return [entry(r) for r in rows]

    async def entries_after(
        self, user_id: str, version: int, *, limit: int | None = None
    ) -> list[Entry]:
        # Served by the unique index (user_id, user_version) of migration 0004.
        rows = await self._db.fetch(
            "SELECT * FROM ledger_entries WHERE user_id = $1 AND user_version > $2"
            " ORDER BY user_version" + ("" if limit is None else f" LIMIT {int(limit)}"),
            user_id,
            version,
        )
        return [entry(r) for r in rows]


def entry(r: Row, *, created: bool = True) -> Entry:
    return Entry(
        id=r["id"],
        user_id=r["user_id"],
        kind=r["kind"],
        amount=r["amount"],
        balance_after=r["balance_after"],
        reference=r["reference"],
        reason=r["reason"],
        actor=r["actor"],
        created_at=r["created_at"],
        created=created,
        version=r["user_version"],
    )
