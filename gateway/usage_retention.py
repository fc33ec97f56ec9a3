"""The usage rows' months: added ahead and, with ``GATEWAY_USAGE_RETENTION_MONTHS``, dropped
when they fall out of the retention window. Runs once at startup, then daily, in every process
(each pass is idempotent: a month already added or dropped is skipped).

Only usage rows go: ledger entries (the money) and the usage rollups (the reports' sums) are
kept for ever (guarantees: gateway/ledger/ports.py, UsageStorage).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime

from gateway.ledger.partitions import month_of, shift
from gateway.ledger.ports import Audit
from gateway.ledger.support_ports import UsageStorage
from gateway.records import AuditEvent, utcnow

log = logging.getLogger("gateway")
DAY = 86400.0


def horizon(now: datetime, months: int) -> datetime:
    """The first instant kept: the start of the UTC month ``months`` before ``now``'s (so the
    current month and ``months`` whole months before it are kept)."""
    return shift(month_of(now), -months)


def prune_event(
    actor: str, keep_months: int, first_kept: datetime, months: list[str]
) -> AuditEvent:
    """The audit trail's ``usage.prune``: ``months`` (``YYYY-MM``) dropped, by ``actor`` (an
    operator's prune, or ``retention``: the setting's daily pass)."""
    return AuditEvent(
        actor=actor,
        action="usage.prune",
        target=None,
        details={
            "keep_months": keep_months,
            "first_kept": first_kept.isoformat(),
            "months": months,
        },
    )


class UsageRetention:
    """``audit``: where a pass that dropped months records it (``usage.prune`` by the actor
    ``retention``, as an operator's prune is recorded), so no usage leaves without a trace."""

    def __init__(
        self,
        storage: UsageStorage,
        months: int | None,
        *,
        audit: Audit | None = None,
        interval: float = DAY,
    ) -> None:
        self._storage = storage
        self._audit = audit
        self._months = months
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    async def run_once(self, now: datetime | None = None) -> list[str]:
        """Adds this month's and the next month's storage; drops the months before the
        horizon when a retention is set. Answers the months dropped (``YYYY-MM``)."""
        now = now or utcnow()
        added = await self._storage.prepare(now)
        if added:
            log.info("usage months added: %s", ", ".join(added))
        if self._months is None:
            return []
        first_kept = horizon(now, self._months)
        dropped = await self._storage.drop_before(first_kept)
        if dropped:
            log.warning(
                "usage months dropped (GATEWAY_USAGE_RETENTION_MONTHS=%d): %s",
                self._months,
                ", ".join(dropped),
            )
            if self._audit is not None:
                event = prune_event("retention", self._months, first_kept, dropped)
                await self._audit.record_audit(event)
        return dropped

    async def start(self) -> None:
        """The first pass runs now (its failure is logged, never fatal: a month missing is
        added on demand by the writer), then one a day."""
        await self._pass()
        self._task = asyncio.create_task(self._run(), name="usage-retention")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self._pass()

    async def _pass(self) -> None:
        try:
            await self.run_once()
        except Exception as exc:  # the database down, a drop that waited too long: next day
            log.warning("usage retention pass failed: %s: %s", type(exc).__name__, exc)
