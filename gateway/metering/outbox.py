"""The embedded usage outbox: settled records reach the ledger in batches, never lost.

``MemoryStore.settle`` appends each record to an in-process deque; this writer drains it into
``Journal.write_usage`` in batches (one transaction per batch). A batch that fails stays queued
and is retried with backoff. At shutdown whatever cannot be written is spilled to a JSON-lines
file next to the database and replayed at the next start; ``write_usage`` is idempotent on the
request id, so a replay can never bill twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from pathlib import Path

from gateway.ledger.ports import Journal
from gateway.metering.codec import decode_record, encode_record
from gateway.records import UsageRecord

log = logging.getLogger("gateway.outbox")
BATCH = 500


class OutboxWriter:
    def __init__(
        self,
        journal: Journal,
        outbox: deque[UsageRecord],
        *,
        spill_path: Path | None,
        interval: float = 0.05,
    ) -> None:
        self._journal = journal
        self._outbox = outbox
        self._spill = spill_path
        self._interval = interval
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.written = 0
        self.last_error: str | None = None

    def notify(self) -> None:
        if len(self._outbox) >= BATCH:
            self._wake.set()

    @property
    def backlog(self) -> int:
        return len(self._outbox)

    async def start(self) -> None:
        await self._replay_spill()
        self._task = asyncio.create_task(self._run(), name="usage-outbox")

    async def _run(self) -> None:
        delay = self._interval
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
            self._wake.clear()
            try:
                await self.flush()
                delay = self._interval
            except Exception as exc:  # the database is down: keep the records, retry later
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.error("usage outbox flush failed, %d queued: %s", self.backlog, exc)
                delay = min(max(delay * 2, 0.5), 5.0)

    async def flush(self) -> None:
        async with self._lock:
            while self._outbox:
                batch = [self._outbox[i] for i in range(min(BATCH, len(self._outbox)))]
                await self._journal.write_usage(batch)
                # Only now, after commit, do the records leave the outbox.
                for _ in batch:
                    self._outbox.popleft()
                self.written += len(batch)
                self.last_error = None

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            await self.flush()
        except Exception as exc:
            log.error("final usage flush failed (%s); spilling %d records", exc, self.backlog)
            self._spill_all()

    def _spill_all(self) -> None:
        if self._spill is None or not self._outbox:
            return
        self._spill.parent.mkdir(parents=True, exist_ok=True)
        with self._spill.open("ab") as fh:
            while self._outbox:
                fh.write(encode_record(self._outbox.popleft()) + b"\n")

    async def _replay_spill(self) -> None:
        if self._spill is None or not self._spill.exists():
            return
        records = []
        for line in self._spill.read_bytes().splitlines():
            if line.strip():
                records.append(decode_record(line))
        for i in range(0, len(records), BATCH):
            await self._journal.write_usage(records[i : i + BATCH])
        log.info("replayed %d spilled usage records", len(records))
        self._spill.unlink()
