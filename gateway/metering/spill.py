"""The spill file of the Redis store: settlements and credits Redis has not taken yet,
journaled per process so that a crash loses none (adopted by the next process to open)."""

from __future__ import annotations

import fcntl
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO

import orjson

from gateway.metering.codec import decode_record, encode_record, process_name
from gateway.records import UsageRecord

log = logging.getLogger("gateway.redis_store")


@dataclass(frozen=True, slots=True)
class Credit:
    """A committed ledger change on its way to Redis (queued like a settlement when down).

    ``version`` is the user's ledger version right after the change: it names the change."""

    user_id: str
    delta: int
    version: int


Pending = UsageRecord | Credit


class Journal:
    """This process's spill file, flock'ed while it lives so that only dead processes' files
    are adopted. Each line is one record not yet accepted by Redis."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.path = directory / f"settle-{process_name()}.jsonl"
        self._fh: IO[bytes] | None = None

    def open(self) -> list[Pending]:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "ab")  # held, and locked, until close()
        fcntl.flock(self._fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        adopted: list[Pending] = []
        for other in sorted(self.dir.glob("settle-*.jsonl")):
            if other == self.path:
                continue
            with open(other, "rb") as fh:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a live process owns it
                items = read_lines(fh.read(), other)
                self.append(items)  # ours now, durable before the orphan goes
                other.unlink(missing_ok=True)
            adopted.extend(items)
        return adopted

    def append(self, items: list[Pending]) -> None:
        if self._fh is None or not items:
            return
        self._fh.write(b"".join(encode_pending(item) + b"\n" for item in items))
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def clear(self) -> None:
        if self._fh is not None:
            os.ftruncate(self._fh.fileno(), 0)

    def close(self, remaining: list[Pending]) -> None:
        if self._fh is None:
            return
        self.clear()
        self.append(remaining)
        if not remaining:
            self.path.unlink(missing_ok=True)
        self._fh.close()
        self._fh = None


def encode_pending(item: Pending) -> bytes:
    if isinstance(item, Credit):
        return orjson.dumps({"credit": asdict(item)})
    return encode_record(item)


def read_lines(data: bytes, path: Path) -> list[Pending]:
    items: list[Pending] = []
    for line in data.splitlines():
        if not line.strip():
            continue
        try:
            credit = orjson.loads(line).get("credit")
            if credit is None:
                items.append(decode_record(line))
            elif credit.get("version") is not None:
                items.append(Credit(credit["user_id"], credit["delta"], credit["version"]))
            else:  # spilled by an older release: the reconciler applies it from the ledger
                log.warning("spilled credit without a ledger version left to the reconciler")
        except Exception:  # a line torn by a crash mid-write: keep it visible in the log
            log.error("unreadable spilled line in %s: %r", path, line)
    return items
