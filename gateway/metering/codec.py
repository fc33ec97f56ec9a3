"""How a settled usage record travels outside the process: one JSON codec for the Redis
stream, the Redis store's spill journal and the embedded outbox's spill file, so a record
written by one can always be read by another.

A record is its dataclass as a JSON object (orjson; ``created_at`` as ISO 8601 with its UTC
offset, amounts and token counts as integers, never floats, ``tags`` as a list).
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import datetime

import orjson

from gateway.records import UsageRecord


def encode_record(record: UsageRecord) -> bytes:
    # orjson serialises the dataclass directly (datetime as ISO 8601 with its offset).
    return orjson.dumps(record)


def decode_record(raw: bytes | str) -> UsageRecord:
    """Raises ValueError/TypeError/KeyError on a torn or foreign line."""
    data = orjson.loads(raw)
    data["created_at"] = datetime.fromisoformat(data["created_at"])
    if "tags" in data:  # a JSON list; absent in records written before migration 0008
        data["tags"] = tuple(data["tags"])
    return UsageRecord(**data)


def process_name() -> str:
    """Unique per process and start (consumer name, spill file name), so a restarted process
    never inherits a dead one's pending entries or file lock."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
