"""Keeps Redis's cached balances whole: every committed credit-like ledger entry reaches them.

A money movement commits to the ledger first and then reaches the balance store
(``gateway.postings``). A process that dies between the two leaves Redis short of a committed
top-up, grant or refund, and Redis never reloads a live balance by itself. The reconciler
closes that window, at start and every ``interval`` seconds, for each user Redis caches:

1. read the balance's load version ``lver`` and the versions credited since (``cv``);
2. read the user's ledger entries after ``lver``;
3. apply each non-usage entry whose version is missing, with that version (idempotent: a
   racing apply by the money path or another process's reconciler is a no-op), and log and
   count it (``gateway_reconcile_repairs_total``);
4. move ``lver`` up to the last entry read, so ``cv`` stays small (advance.lua).

Usage entries are not compared: they reach Redis first (settle.lua) and the ledger later
through the stream, whose consumer group never drops one. Comparing whole balances would
have to subtract that in-flight usage, which no single read can see consistently; comparing
the credit entries themselves is exact.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from gateway.metering.redis_store import RedisStore
from gateway.metrics import Metrics
from gateway.records import Entry

log = logging.getLogger("gateway.reconciler")

EntriesAfter = Callable[[str, int], Awaitable[list[Entry]]]


class Reconciler:
    def __init__(
        self,
        store: RedisStore,
        entries_after: EntriesAfter,
        *,
        metrics: Metrics,
        interval: float = 60.0,
    ) -> None:
        self._store = store
        self._entries_after = entries_after
        self._metrics = metrics
        self._interval = interval
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self.last_error: str | None = None

    @property
    def backlog(self) -> int:
        return 0

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="reconciler")

    async def stop(self) -> None:
        """Cooperative first: redis-py can swallow a cancellation that lands mid-command (it
        turns it into a connection error), which would leave a cancelled loop running."""
        if self._task is None:
            return
        self._stopping.set()
        done, _ = await asyncio.wait({self._task}, timeout=5.0)
        if not done:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({self._task}, timeout=5.0)
        self._task = None

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.run_once()
                self.last_error = None
            except Exception as exc:  # Redis or the ledger down: the next round tries again
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("reconcile round failed: %s", self.last_error)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval)

    async def run_once(self) -> int:
        """One pass over every cached user; returns the number of entries repaired."""
        repaired = 0
        for user_id in await self._store.cached_users():
            repaired += await self.reconcile(user_id)
        self._metrics.reconcile_runs += 1
        return repaired

    async def reconcile(self, user_id: str) -> int:
        state = await self._store.applied(user_id)
        if state is None:
            return 0  # not cached: the next load reads the ledger, which has everything
        lver, applied = state
        entries = await self._entries_after(user_id, lver)
        versions = [_version(e) for e in entries]
        credits = [
            (e, v) for e, v in zip(entries, versions, strict=True) if e.kind != "usage" and e.amount
        ]
        repaired = 0
        for entry, version in credits:
            if version in applied:
                continue
            await self._store.credit(user_id, entry.amount, version=version)
            repaired += 1
            self._metrics.reconciled(entry.amount)
            log.warning(
                "reconciled %s: applied ledger entry %s (%s %d nano-USD, version %d) that the "
                "balance store had not received",
                user_id,
                entry.reference,
                entry.kind,
                entry.amount,
                version,
            )
        if versions:
            await self._store.advance(user_id, lver, max(versions), [v for _, v in credits])
        return repaired


def _version(entry: Entry) -> int:
    if entry.version is None:  # the ledger contract sets it on every entry it returns
        raise ValueError(f"ledger entry {entry.reference!r} came back without its version")
    return entry.version
