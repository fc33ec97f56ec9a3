"""The BalanceStore port and its in-process implementation (embedded mode).

A BalanceStore holds, per user, the spendable balance and the open reservations, in front of
the ledger. Guarantees (tests/metering/test_store_contract.py checks every implementation):

- ``admit`` is atomic: it reserves ``amount`` only if ``balance - reserved >= amount``, so
  concurrent calls can never reserve more than the balance. Admitting a request id that holds
  a live reservation replaces it (what it held counts as available): a stream's hold grows
  this way, and its ttl starts again.
- ``settle`` is idempotent per request id: it debits ``record.cost`` from the balance,
  drops the request's reservation and hands the record to the outbox, at most once, in one
  atomic step. A settlement is accepted even after its reservation expired: a served call is
  always billed.
- Reservations expire after their ttl, so a crashed process cannot pin a balance.
- ``credit`` applies a change the ledger has already committed (grant, top-up, refund,
  adjustment), named by the user's ledger version right after it: at most once per version,
  and never on top of a loaded balance whose ledger read already included it.
- On a miss the balance is loaded from the ledger; a load can never overwrite a newer value.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from gateway.ledger.base import UnknownUser
from gateway.records import UsageRecord

Loader = Callable[[str], Awaitable[tuple[int, int] | None]]
SETTLED_MEMORY = 200_000


@dataclass(frozen=True, slots=True)
class Admission:
    ok: bool
    available: int  # balance - reserved before this admission, its own live hold included
    balance: int


class BalanceStore(Protocol):
    async def admit(self, user_id: str, request_id: str, amount: int, *, ttl: float) -> Admission:
        """Raises ``UnknownUser`` when the ledger has no such user."""

    async def settle(self, record: UsageRecord) -> int | None:
        """Returns the balance after the debit, or None when already settled or deferred
        (store unreachable: the record is kept and retried, never dropped)."""

    async def credit(self, user_id: str, delta: int, *, version: int) -> None:
        """Applies a committed ledger change of ``delta`` nano-USD. ``version`` is the user's
        ledger version right after it: a loaded balance at that version or later already
        includes it, and a second call with it does nothing. Only ``gateway.postings`` (the
        one money path) and the reconciler call this."""

    async def snapshot(self, user_id: str) -> tuple[int, int] | None:
        """(balance, reserved) as the store sees it, loading on a miss."""

    async def ping(self) -> None:
        """Raises when the store cannot answer."""

    async def close(self) -> None: ...


@dataclass(slots=True)
class _Account:
    balance: int
    version: int = 0  # the ledger version the balance was loaded at
    reservations: dict[str, tuple[int, float]] = field(default_factory=dict)
    reserved: int = 0
    # Versions credited since the load: credits are rare, so the set stays small.
    applied: set[int] = field(default_factory=set)

    def expire(self, now: float) -> None:
        stale = [rid for rid, (_, until) in self.reservations.items() if until <= now]
        for rid in stale:
            self.reserved -= self.reservations.pop(rid)[0]


class MemoryStore:
    """Everything in one process; the event loop is the lock (no awaits inside a change)."""

    def __init__(self, loader: Loader, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._loader = loader
        self._clock = clock
        self._accounts: dict[str, _Account] = {}
        self._generation: dict[str, int] = {}
        self._settled: OrderedDict[str, None] = OrderedDict()
        self.outbox: deque[UsageRecord] = deque()
        self.on_record: Callable[[], None] = lambda: None

    async def _account(self, user_id: str) -> _Account:
        account = self._accounts.get(user_id)
        while account is None:
            # A credit committed while we were loading bumps the generation: load again, so
            # a stale read can never win.
            generation = self._generation.get(user_id, 0)
            loaded = await self._loader(user_id)
            if loaded is None:
                raise UnknownUser(user_id)
            account = self._accounts.get(user_id)
            if account is None and generation == self._generation.get(user_id, 0):
                account = self._accounts[user_id] = _Account(balance=loaded[0], version=loaded[1])
        return account

    async def admit(self, user_id: str, request_id: str, amount: int, *, ttl: float) -> Admission:
        account = await self._account(user_id)
        now = self._clock()
        account.expire(now)
        live = account.reservations.get(request_id)
        prior = live[0] if live is not None else 0
        available = account.balance - (account.reserved - prior)
        if amount > available:
            return Admission(ok=False, available=available, balance=account.balance)
        account.reservations[request_id] = (amount, now + ttl)
        account.reserved += amount - prior
        return Admission(ok=True, available=available, balance=account.balance)

    async def settle(self, record: UsageRecord) -> int | None:
        account = await self._account(record.user_id)
        if record.request_id in self._settled:
            return None
        self._settled[record.request_id] = None
        if len(self._settled) > SETTLED_MEMORY:
            self._settled.popitem(last=False)
        held = account.reservations.pop(record.request_id, None)
        if held is not None:
            account.reserved -= held[0]
        account.balance -= record.cost
        self.outbox.append(record)
        self.on_record()
        return account.balance

    async def credit(self, user_id: str, delta: int, *, version: int) -> None:
        account = self._accounts.get(user_id)
        if account is None:
            # A load in flight may have read the ledger before this change: make it read again.
            self._generation[user_id] = self._generation.get(user_id, 0) + 1
        elif version > account.version and version not in account.applied:
            # account.version stays the load version: credits may arrive out of order.
            account.applied.add(version)
            account.balance += delta

    async def snapshot(self, user_id: str) -> tuple[int, int] | None:
        try:
            account = await self._account(user_id)
        except LookupError:
            return None
        account.expire(self._clock())
        return account.balance, account.reserved

    @property
    def backlog(self) -> int:
        return 0

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None
