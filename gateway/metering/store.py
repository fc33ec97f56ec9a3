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
- ``quotas`` (gateway/metering/quota.py: per-key and per-user budget, rpm, tpm, concurrency)
  are checked and counted in the same atomic step as the balance: a call is admitted against
  all of them or none. ``settle`` releases its holds, moves its cost to the period's spend and
  corrects its tokens.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from gateway.ledger.base import UnknownUser
from gateway.metering.quota import WINDOW_MS, LimitRefusal, Quota, QuotaUsage
from gateway.records import UsageRecord

Loader = Callable[[str], Awaitable[tuple[int, int] | None]]
# The period's spend of a scope (k:<key id> | u:<user id>) from the ledger, since a start.
SpendLoader = Callable[[Quota], Awaitable[int]]


async def no_spend(quota: Quota) -> int:
    return 0


# The request ids whose settlement this process applied, newest last, so a second settle of
# one (a retry) moves no money. A retry follows its first try within seconds, while the call
# is still in flight; 50,000 ids (~10 MB) cover minutes of a busy process.
SETTLED_MEMORY = 50_000


@dataclass(frozen=True, slots=True)
class Admission:
    ok: bool
    available: int  # balance - reserved before this admission, its own live hold included
    balance: int
    refused: LimitRefusal | None = None  # set when a limit, not the balance, refused
    quotas: tuple[QuotaUsage, ...] = ()  # each quota's counters after an admission


def scopes_of(record: UsageRecord) -> tuple[str, ...]:
    """The quota scopes a settled call counts in."""
    return (
        (f"k:{record.key_id}", f"u:{record.user_id}") if record.key_id else (f"u:{record.user_id}",)
    )


class BalanceStore(Protocol):
    async def admit(
        self,
        user_id: str,
        request_id: str,
        amount: int,
        *,
        ttl: float,
        quotas: tuple[Quota, ...] = (),
        tokens: int = 0,
    ) -> Admission:
        """Reserves ``amount`` nano-USD and counts ``tokens`` against every quota, or nothing.
        Raises ``UnknownUser`` when the ledger has no such user."""

    async def quota_usage(self, user_id: str, quota: Quota) -> QuotaUsage:
        """The counters of a scope of ``user_id`` now, as an admission would see them
        (nothing changes)."""

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


@dataclass(slots=True)
class _Scope:
    period: int
    spent: int
    # The period kind ``spent`` counts (None: no budget, not counted from the ledger).
    kind: str | None = None
    holds: dict[str, tuple[int, float]] = field(default_factory=dict)  # rid -> amount, until
    reserved: int = 0
    # rid -> (admitted at, tokens), oldest first: the sliding log of the last 60 s.
    window: OrderedDict[str, tuple[float, int]] = field(default_factory=OrderedDict)
    tokens: int = 0

    def refresh(self, q: Quota, now: float) -> None:
        for rid in [r for r, (_, until) in self.holds.items() if until <= now]:
            self.reserved -= self.holds.pop(rid)[0]
        edge = now - WINDOW_MS / 1000
        while self.window:
            rid, (at, used) = next(iter(self.window.items()))
            if at > edge:
                break
            del self.window[rid]
            self.tokens -= used

    def usage(self, scope: str, now: float) -> QuotaUsage:
        oldest = next(iter(self.window.values()))[0] if self.window else None
        reset = 0 if oldest is None else max(0, int((oldest - now) * 1000) + WINDOW_MS)
        return QuotaUsage(
            scope, self.spent, self.reserved, len(self.window), self.tokens, len(self.holds), reset
        )

    def refusal(self, q: Quota, rid: str, amount: int, tokens: int, now: float) -> str | None:
        held = self.holds.get(rid)
        counted = self.window.get(rid)
        if held is None and counted is None:
            if q.max_concurrent is not None and len(self.holds) >= q.max_concurrent:
                return "max_concurrent"
            if q.rpm is not None and len(self.window) >= q.rpm:
                return "rpm"
        prior = counted[1] if counted is not None else 0
        if q.tpm is not None and self.tokens - prior + tokens > q.tpm:
            return "tpm"
        if q.budget is not None:
            if self.spent + self.reserved - (held[0] if held else 0) + amount > q.budget:
                return "budget"
        return None

    def retry_ms(self, limit: str, q: Quota, rid: str, tokens: int, now: float) -> int | None:
        if limit == "max_concurrent":
            return 1000  # no telling when a call ends: try again in a second
        if limit == "budget" or (limit == "tpm" and q.tpm is not None and tokens > q.tpm):
            return None
        need = 1 if limit == "rpm" else self.tokens - self._prior(rid) + tokens - (q.tpm or 0)
        freed = 0
        for at, used in self.window.values():
            freed += 1 if limit == "rpm" else used
            if freed >= need:
                return max(0, int((at - now) * 1000) + WINDOW_MS)
        return WINDOW_MS

    def _prior(self, rid: str) -> int:
        counted = self.window.get(rid)
        return counted[1] if counted is not None else 0

    def take(self, rid: str, amount: int, tokens: int, until: float, now: float) -> None:
        held = self.holds.get(rid)
        self.reserved += amount - (held[0] if held else 0)
        self.holds[rid] = (amount, until)
        counted = self.window.get(rid)
        if counted is not None:
            self.tokens += tokens - counted[1]
            self.window[rid] = (counted[0], tokens)
        elif held is None:  # a stream re-admitted after 60 s is not a new request
            self.window[rid] = (now, tokens)
            self.tokens += tokens

    def settle(self, rid: str, cost: int, used: int) -> None:
        held = self.holds.pop(rid, None)
        if held is not None:
            self.reserved -= held[0]
        self.spent += cost
        counted = self.window.get(rid)
        if counted is not None:
            self.tokens += used - counted[1]
            self.window[rid] = (counted[0], used)


class MemoryStore:
    """Everything in one process; the event loop is the lock (no awaits inside a change)."""

    def __init__(
        self,
        loader: Loader,
        *,
        clock: Callable[[], float] = time.monotonic,
        spend_loader: SpendLoader = no_spend,
    ) -> None:
        self._loader = loader
        self._spend_loader = spend_loader
        self._clock = clock
        self._scopes: dict[str, _Scope] = {}
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

    async def admit(
        self,
        user_id: str,
        request_id: str,
        amount: int,
        *,
        ttl: float,
        quotas: tuple[Quota, ...] = (),
        tokens: int = 0,
    ) -> Admission:
        account = await self._account(user_id)
        scopes = [await self._scope(q) for q in quotas]
        # From here on no await: the checks and the changes are one atomic step.
        now = self._clock()
        account.expire(now)
        live = account.reservations.get(request_id)
        prior = live[0] if live is not None else 0
        available = account.balance - (account.reserved - prior)
        for q, scope in zip(quotas, scopes, strict=True):
            scope.refresh(q, now)
            limit = scope.refusal(q, request_id, amount, tokens, now)
            if limit is not None:
                retry = scope.retry_ms(limit, q, request_id, tokens, now)
                refused = LimitRefusal(q.scope, limit, retry)
                return Admission(False, available, account.balance, refused=refused)
        if amount > available:
            return Admission(ok=False, available=available, balance=account.balance)
        account.reservations[request_id] = (amount, now + ttl)
        account.reserved += amount - prior
        for scope in scopes:
            scope.take(request_id, amount, tokens, now + ttl, now)
        counters = tuple(s.usage(q.scope, now) for q, s in zip(quotas, scopes, strict=True))
        return Admission(ok=True, available=available, balance=account.balance, quotas=counters)

    async def _scope(self, q: Quota) -> _Scope:
        scope = self._scopes.get(q.scope)
        if q.budget is not None and (scope is None or _recount(scope, q)):
            # A budget just set on a limited scope, a changed period or a new one: the spend
            # is the ledger's (a caller behind on the clock does not move it back).
            spent = await self._spend_loader(q)
            scope = self._scopes.get(q.scope)
            if scope is None:
                scope = self._scopes[q.scope] = _Scope(q.period_start, spent, q.period)
            elif _recount(scope, q):
                scope.period, scope.spent, scope.kind = q.period_start, spent, q.period
        elif scope is None:
            scope = self._scopes[q.scope] = _Scope(period=q.period_start, spent=0)
        return scope

    async def quota_usage(self, user_id: str, quota: Quota) -> QuotaUsage:
        scope = await self._scope(quota)
        now = self._clock()
        scope.refresh(quota, now)
        return scope.usage(quota.scope, now)

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
        used = record.prompt_tokens + record.completion_tokens
        for name in scopes_of(record):
            scope = self._scopes.get(name)
            if scope is not None:
                scope.settle(record.request_id, record.cost, used)
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


def _recount(scope: _Scope, q: Quota) -> bool:
    return scope.kind != q.period or scope.period < q.period_start
