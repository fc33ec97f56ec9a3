"""SQLite's usage settlement: a batch of records, their debits, ledger entries and rollups in
one IMMEDIATE transaction of a few set-based statements.

Each statement takes its rows as one JSON array (``json_each``) instead of one execution per
row. Python's sqlite3 releases the GIL around every ``sqlite3_step``, and the writer thread
must win it back from the event loop each time: under a saturated loop that wait is the
interpreter's switch interval (5 ms), so ``executemany`` wrote ~120 rows/s and the outbox grew
without bound (bench/PROFILE.md). One step per statement needs a handful of waits per batch.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import orjson

from gateway.ledger.base import UnknownUser
from gateway.ledger.rollups import ADD_ON_CONFLICT, KEY, MEASURES, deltas
from gateway.ledger.sql import USAGE_COLUMNS, USAGE_FIELDS, usage_values
from gateway.ledger.sqlite_time import ts
from gateway.records import UsageRecord, utcnow

_CREATED_AT = USAGE_FIELDS.index("created_at")  # the one timestamp of a usage row


def _columns(names: Sequence[str]) -> str:
    """``json_extract(value, '$[i]')`` for each position of a JSON array row."""
    return ", ".join(f"json_extract(value, '$[{i}]')" for i in range(len(names)))


# The request ids of a batch already recorded, or already debited (the ledger reference
# outlives a usage row the retention deleted).
_RECORDED = """
SELECT json_group_array(value) FROM json_each(?1)
WHERE EXISTS (SELECT 1 FROM usage_records WHERE request_id = value)
   OR EXISTS (SELECT 1 FROM ledger_entries WHERE reference = 'usage:' || value)
"""
_BOOKS = """
SELECT json_group_array(json_array(id, balance, version)) FROM users
WHERE id IN (SELECT value FROM json_each(?1))
"""
_INSERT_USAGE = (
    f"INSERT INTO usage_records ({USAGE_COLUMNS}) "
    f"SELECT {_columns(USAGE_FIELDS)} FROM json_each(?1)"
)
_ROLLUP_COLUMNS = (*KEY, *MEASURES)
_UPSERT_ROLLUPS = (
    f"INSERT INTO usage_rollups ({', '.join(_ROLLUP_COLUMNS)}) "
    f"SELECT {_columns(_ROLLUP_COLUMNS)} FROM json_each(?1) WHERE true "  # (upsert syntax)
    + ADD_ON_CONFLICT
)
_ENTRY_COLUMNS = ("user_id", "amount", "balance_after", "user_version", "reference")
_INSERT_ENTRIES = (
    f"INSERT INTO ledger_entries (kind, created_at, {', '.join(_ENTRY_COLUMNS)}) "
    # In array order: entry ids are then the running-balance order.
    f"SELECT 'usage', ?2, {_columns(_ENTRY_COLUMNS)} FROM json_each(?1) ORDER BY key"
)
_UPDATE_USERS = """
UPDATE users SET balance = b.balance, version = b.version
FROM (SELECT json_extract(value, '$[0]') AS id, json_extract(value, '$[1]') AS balance,
             json_extract(value, '$[2]') AS version FROM json_each(?1)) AS b
WHERE users.id = b.id
"""


def write_usage(c: sqlite3.Connection, records: Sequence[UsageRecord]) -> list[str]:
    """Records, debits and rolls up the records not yet recorded; returns their request ids.

    Run inside one IMMEDIATE transaction (no other writer can interleave). Invariant: per
    user balance == sum(entries) and version == number of entries; a request id is debited at
    most once however often it is replayed; every rollup bucket == the sum of its rows.
    Raises UnknownUser (the whole batch is refused, as in PostgreSQL).
    """
    fresh: dict[str, UsageRecord] = {}
    for r in records:
        fresh.setdefault(r.request_id, r)  # within a batch the first copy wins
    (seen,) = c.execute(_RECORDED, (_json(list(fresh)),)).fetchone().values()
    for request_id in orjson.loads(seen):
        del fresh[request_id]  # a replay: already recorded and debited once
    if not fresh:
        return []
    users = sorted({r.user_id for r in fresh.values()})
    (found,) = c.execute(_BOOKS, (_json(users),)).fetchone().values()
    books = {user_id: (balance, version) for user_id, balance, version in orjson.loads(found)}
    missing = [u for u in users if u not in books]
    if missing:
        raise UnknownUser(missing[0])
    c.execute(_INSERT_USAGE, (_json([_usage_row(r) for r in fresh.values()]),))
    rollups = [[*d[:2], ts(d[2]), *d[3:]] for d in deltas(fresh.values())]
    c.execute(_UPSERT_ROLLUPS, (_json(rollups),))
    entries = []
    for r in fresh.values():
        if r.cost:
            balance, version = books[r.user_id]
            books[r.user_id] = (balance - r.cost, version + 1)
            entries.append((r.user_id, -r.cost, *books[r.user_id], f"usage:{r.request_id}"))
    c.execute(_INSERT_ENTRIES, (_json(entries), ts(utcnow())))
    c.execute(_UPDATE_USERS, (_json([(u, *book) for u, book in books.items()]),))
    return list(fresh)


def _usage_row(record: UsageRecord) -> list[Any]:
    # Only created_at needs converting: every other value is a str, an int or None.
    values = usage_values(record)
    values[_CREATED_AT] = ts(values[_CREATED_AT])
    return values


def _json(rows: Any) -> str:
    return orjson.dumps(rows).decode()
