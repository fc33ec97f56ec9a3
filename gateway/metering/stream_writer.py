"""The production usage outbox: a Redis Stream drained into the ledger by a consumer group.

``settle.lua`` appends every settled record to the stream (field ``r``, JSON). Every gateway
process runs one ``StreamWriter`` in the group ``gw-writers``. Guarantees:

- A batch reaches the ledger in one ``Ledger.write_usage`` call (one transaction) and is
  acknowledged (XACK, then XDEL to keep the stream short) only after that commit. A crash
  between the two leaves the entries pending; they are written again, and ``write_usage`` is
  idempotent per request id, so nothing is billed twice.
- Ledger down: the entries stay pending and are retried with backoff; nothing is dropped.
- A dead consumer's pending entries are claimed (XAUTOCLAIM) once idle > ``claim_idle_ms``.
- A record the ledger refuses while it answers other writes (a poison record) would block
  every later batch; after ``strikes`` refusals on its own it moves to ``<stream>:dead``
  (kept whole, for an operator) and the stream moves on.

Because acknowledged entries are deleted, the stream length is exactly the backlog: entries
pending in the group plus entries not yet delivered.

A sharded layout (layout.py) has one stream per shard: ``StreamWriters`` runs one writer per
stream in every process, each with its own group, so every process reads every shard.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from redis.exceptions import ResponseError

from gateway.ledger.base import Ledger
from gateway.metering.clients import DOWN, Client
from gateway.metering.codec import decode_record, encode_record, process_name
from gateway.records import UsageRecord

log = logging.getLogger("gateway.stream_writer")
STRIKES = 10
StreamEntry = tuple[Any, Any]  # (entry id, fields) as redis-py returns them


class StreamWriter:
    def __init__(
        self,
        redis: Client,
        ledger: Ledger,
        *,
        stream: str = "gw:usage",
        group: str = "gw-writers",
        consumer: str | None = None,
        batch: int = 500,
        block_ms: int = 1000,
        linger: float = 0.05,
        claim_idle_ms: int = 60_000,
        claim_interval: float = 5.0,
        drain_timeout: float = 10.0,
        strikes: int = STRIKES,
        close_redis: bool = False,
    ) -> None:
        self._redis = redis
        self._ledger = ledger
        self.stream = stream
        self.group = group
        self.consumer = consumer or process_name()
        self._batch = batch
        self._block_ms = block_ms
        self._linger = linger
        self._claim_idle_ms = claim_idle_ms
        self._claim_interval = claim_interval
        self._drain_timeout = drain_timeout
        self._max_strikes = strikes
        self._close_redis = close_redis
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._strikes: dict[Any, int] = {}
        self._backlog = 0
        self.written = 0
        self.last_error: str | None = None

    @property
    def backlog(self) -> int:
        """Records settled but not yet committed to the ledger (as of the last pass)."""
        return self._backlog

    async def ensure_group(self) -> None:
        try:
            # id 0: entries already in the stream (a group lost with its PEL) are delivered.
            await self._redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def start(self) -> None:
        try:
            await self.ensure_group()
            await self._refresh_backlog()
        except DOWN as exc:  # Redis down at start: the loop keeps trying
            self.last_error = f"{type(exc).__name__}: {exc}"
        self._task = asyncio.create_task(self._run(), name="usage-stream-writer")

    async def stop(self) -> None:
        """Stops reading, then drains (bounded): what is left stays pending for another consumer."""
        self._stopping.set()
        if self._task is not None:
            # Cooperative first: cancelling redis-py mid-command (a blocking XREADGROUP above
            # all) has been known to leave a connection or the task hanging.
            done, _ = await asyncio.wait({self._task}, timeout=self._block_ms / 1000 + 5.0)
            if not done:
                self._task.cancel()
                await asyncio.wait({self._task}, timeout=1.0)
            self._task = None
        try:
            await asyncio.wait_for(self._drain(), self._drain_timeout)
        except Exception as exc:
            log.error(
                "usage stream not drained at stop (%r); %d entries stay in Redis",
                exc,
                self._backlog,
            )
        finally:
            if self._close_redis:
                await self._redis.aclose()

    async def _run(self) -> None:
        delay, recover, next_claim = 0.05, True, 0.0
        loop = asyncio.get_running_loop()
        while not self._stopping.is_set():
            try:
                if recover:  # after a failure our own delivered entries may be unacked
                    await self._own_pending()
                    recover = False
                if loop.time() >= next_claim:
                    await self._claim_idle()
                    next_claim = loop.time() + self._claim_interval
                read = await self._read_new(block=self._block_ms)
                await self._refresh_backlog()
                delay = 0.05
                if 0 < read < self._batch // 2:
                    # Light traffic: let a batch gather instead of paying a PostgreSQL
                    # transaction and three Redis commands per call (a stop cuts it short).
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), self._linger)
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.error(
                    "usage stream writer: %s; %d queued, retrying in %.1fs",
                    self.last_error,
                    self._backlog,
                    delay,
                )
                recover = True
                with contextlib.suppress(Exception):
                    await self._refresh_backlog()
                if isinstance(exc, ResponseError) and "NOGROUP" in str(exc):
                    with contextlib.suppress(*DOWN):
                        await self.ensure_group()  # Redis lost the group (or was flushed)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
                delay = min(delay * 2, 5.0)

    async def _drain(self) -> None:
        delay = 0.05
        while True:
            try:
                await self._own_pending()
                while await self._read_new(block=None):
                    pass
                await self._refresh_backlog()
                return
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    async def _read_new(self, *, block: int | None) -> int:
        reply = await self._redis.xreadgroup(
            self.group, self.consumer, {self.stream: ">"}, count=self._batch, block=block
        )
        entries = _entries(reply)
        if entries:
            await self._handle(entries)
        return len(entries)

    async def _own_pending(self) -> None:
        start: Any = "0"
        while True:
            reply = await self._redis.xreadgroup(
                self.group, self.consumer, {self.stream: start}, count=self._batch
            )
            entries = _entries(reply)
            if not entries:
                return
            await self._handle(entries)
            start = entries[-1][0]

    async def _claim_idle(self) -> None:
        start: Any = "0-0"
        for _ in range(20):  # bounded, so claiming never starves fresh entries for long
            reply = await self._redis.xautoclaim(
                self.stream,
                self.group,
                self.consumer,
                self._claim_idle_ms,
                start,
                count=self._batch,
            )
            start, entries = reply[0], [e for e in reply[1] if e[0] is not None]
            if entries:
                log.warning("claimed %d usage entries from an idle consumer", len(entries))
                await self._handle(entries)
            if start in (b"0-0", "0-0"):
                break
        await self._forget_dead_consumers()

    async def _forget_dead_consumers(self) -> None:
        # Consumer names are per process start: without this the group would collect one
        # empty consumer per restart. A live consumer removed by mistake is recreated by its
        # next read, and one with pending entries is never removed.
        horizon = max(10 * self._claim_idle_ms, 3_600_000)
        for info in await self._redis.xinfo_consumers(self.stream, self.group):
            name = info.get("name")
            if name and info.get("pending") == 0 and (info.get("idle") or 0) > horizon:
                await self._redis.xgroup_delconsumer(self.stream, self.group, name)

    async def _handle(self, entries: Sequence[StreamEntry]) -> None:
        ids: list[Any] = []
        records: list[UsageRecord] = []
        for entry_id, fields in entries:
            raw = _field(fields)
            if raw is None:  # deleted while pending: nothing left to write
                await self._ack([entry_id])
                continue
            try:
                records.append(decode_record(raw))
            except Exception as exc:
                await self._dead_letter(entry_id, raw, exc)
                continue
            ids.append(entry_id)
        if records:
            await self._write(ids, records)

    async def _write(self, ids: list[Any], records: list[UsageRecord]) -> None:
        try:
            await self._ledger.journal.write_usage(records)
        except Exception as exc:
            if not await self._ledger_answers():
                raise  # the database is down: everything stays pending
            await self._isolate(ids, records, exc)
            return
        await self._ack(ids)
        self.written += len(records)
        self.last_error = None
        for entry_id in ids:
            self._strikes.pop(entry_id, None)

    async def _isolate(self, ids: list[Any], records: list[UsageRecord], error: Exception) -> None:
        """The database answers but refused the batch: write one by one to find the culprit."""
        stuck = 0
        for entry_id, record in zip(ids, records, strict=True):
            if len(records) > 1:
                try:
                    await self._ledger.journal.write_usage([record])
                except Exception as exc:
                    if not await self._ledger_answers():
                        raise
                    error = exc
                else:
                    await self._ack([entry_id])
                    self.written += 1
                    continue
            strikes = self._strikes[entry_id] = self._strikes.get(entry_id, 0) + 1
            if strikes >= self._max_strikes:
                await self._dead_letter(entry_id, encode_record(record), error)
            else:
                stuck += 1
        if stuck:
            raise RuntimeError(f"ledger refused {stuck} usage record(s): {error!r}; retrying")

    async def _ledger_answers(self) -> bool:
        try:
            await self._ledger.ping()
        except Exception:
            return False
        return True

    async def _ack(self, ids: list[Any]) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xack(self.stream, self.group, *ids)
            pipe.xdel(self.stream, *ids)
            await pipe.execute()

    async def _dead_letter(self, entry_id: Any, raw: bytes | str, exc: Exception) -> None:
        log.error(
            "usage entry %r moved to %s:dead after %r; record=%r", entry_id, self.stream, exc, raw
        )
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xadd(f"{self.stream}:dead", {"r": raw, "id": entry_id, "error": repr(exc)})
            pipe.xack(self.stream, self.group, entry_id)
            pipe.xdel(self.stream, entry_id)
            await pipe.execute()
        self._strikes.pop(entry_id, None)

    async def _refresh_backlog(self) -> None:
        self._backlog = int(await self._redis.xlen(self.stream))


def _entries(reply: Any) -> list[StreamEntry]:
    """XREADGROUP's reply for our one stream, whatever shape the client protocol gives."""
    if not reply:
        return []
    if isinstance(reply, dict):
        found = next(iter(reply.values()))
        # RESP3 legacy shape wraps the list once more.
        if found and isinstance(found[0], list):
            found = found[0]
        return list(found)
    return list(reply[0][1])


def _field(fields: Any) -> Any:
    if not fields:
        return None
    return fields.get(b"r", fields.get("r"))


class StreamWriters:
    """One ``StreamWriter`` per usage stream (shard), started and stopped together; closes
    the client they share after the last one stopped, when ``close_redis``."""

    def __init__(self, writers: Sequence[StreamWriter], *, close_redis: bool = False) -> None:
        self.writers = tuple(writers)
        self._redis = self.writers[0]._redis
        self._close_redis = close_redis

    @property
    def backlog(self) -> int:
        return sum(w.backlog for w in self.writers)

    @property
    def written(self) -> int:
        return sum(w.written for w in self.writers)

    @property
    def last_error(self) -> str | None:
        return next((w.last_error for w in self.writers if w.last_error), None)

    async def ensure_groups(self) -> None:
        for writer in self.writers:
            await writer.ensure_group()

    async def start(self) -> None:
        for writer in self.writers:
            await writer.start()

    async def stop(self) -> None:
        """Stops and drains every shard at once (each bounded as ``StreamWriter.stop``)."""
        try:
            await asyncio.gather(*(w.stop() for w in self.writers))
        finally:
            if self._close_redis:
                await self._redis.aclose()
