"""The one money path: every balance change that is not a call's usage goes through here.

A posting commits a ledger entry (the durable truth) and then applies it to the balance store
with the user's ledger version right after it. Admin credits, set balance, bulk credits,
Stripe top-ups, refunds, auto top-ups and any grant added later call these functions; nothing
else calls ``BalanceStore.credit`` (the reconciler excepted, which replays entries the same
way). Usage is the other direction and has its own path: the store debits first and the
ledger follows through the outbox or stream (``gateway.metering``).

Guarantees:

- Ledger first: the store never holds money the ledger does not.
- Exactly once: the ledger is idempotent on ``reference`` and returns the first entry, with
  its version, on a replay; the store is idempotent on the version. So a replay (a retried
  webhook, a retried admin call with the same reference) applies an entry that a crash kept
  from the store, and never applies one twice.
- A balance loaded concurrently never counts an entry twice: a load at that version or later
  already includes it, and the store skips it (``BalanceStore.credit``).
- Cancellation cannot split the two steps: the posting runs shielded from its caller.
- What a crash between the two steps leaves behind (Redis short of a committed entry) is
  repaired by ``gateway.metering.reconciler``.

Amounts are ``int`` nano-USD, signed (a refund or a downward adjustment is negative).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from gateway.ledger.ports import Journal
from gateway.metering.store import BalanceStore
from gateway.records import Entry

log = logging.getLogger("gateway.postings")

# Test hook: called between the ledger commit and the store apply, to prove that a crash in
# that window is repaired (tests/production). None in every real run.
after_commit: Callable[[Entry], None] | None = None


@dataclass(frozen=True)
class Postings:
    journal: Journal
    store: BalanceStore

    async def post(
        self,
        user_id: str,
        *,
        kind: str,
        amount: int,
        reference: str,
        reason: str | None = None,
        actor: str | None = None,
    ) -> Entry:
        """Moves ``amount`` into the balance (``grant``, ``topup``, ``adjustment``, ``refund``).

        Raises ``UnknownUser``, ``InsufficientFunds`` (a debit below zero),
        ``ReferenceConflict`` (the reference names another movement)."""
        return await self._posted(
            lambda: self.journal.post_entry(
                user_id, kind=kind, amount=amount, reference=reference, reason=reason, actor=actor
            )
        )

    async def set_balance(
        self,
        user_id: str,
        *,
        balance: int,
        reference: str,
        reason: str | None,
        actor: str | None,
    ) -> Entry:
        """One ``adjustment`` entry for the difference, computed inside the ledger's
        transaction; the store gets the difference as a delta, so calls settled but not yet
        written to the ledger are still billed after the new balance. Raises ``UnknownUser``."""
        return await self._posted(
            lambda: self.journal.set_balance(
                user_id, balance=balance, reference=reference, reason=reason, actor=actor
            )
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
    ) -> Entry:
        """Debits ``min(amount, balance)`` (``amount`` > 0): a refund after the credit was
        spent takes what is left. Raises ``UnknownUser``."""
        return await self._posted(
            lambda: self.journal.debit_up_to(
                user_id, kind=kind, amount=amount, reference=reference, reason=reason, actor=actor
            )
        )

    async def _posted(self, commit: Callable[[], Awaitable[Entry]]) -> Entry:
        return await asyncio.shield(self._commit_then_apply(commit))

    async def _commit_then_apply(self, commit: Callable[[], Awaitable[Entry]]) -> Entry:
        entry = await commit()
        if after_commit is not None:
            after_commit(entry)
        await apply(self.store, entry)
        return entry


async def apply(store: BalanceStore, entry: Entry) -> None:
    """Applies a committed entry to the store (idempotent per version); zero moves nothing."""
    if entry.amount == 0:
        return
    if entry.version is None:
        raise ValueError(f"ledger entry {entry.reference!r} came back without its version")
    await store.credit(entry.user_id, entry.amount, version=entry.version)
