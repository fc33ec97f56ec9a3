"""PostgreSQL's usage settlement: a batch of records, their debits, ledger entries and rollups
in one transaction of two statements (``LOCK_USERS``, then ``WRITE_USAGE``).

The batch travels as one JSON array (orjson serialises the records natively: about a
fifteenth of what asyncpg spends encoding the same values as 33 column arrays), and the
rollups are summed by the server from the rows it actually inserted (``inserted``), in the
statement that inserts them, so a bucket always equals its rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields

import orjson

from gateway.ledger.rollups import ADD_ON_CONFLICT, KEY, MEASURES
from gateway.ledger.sql import USAGE_COLUMNS, USAGE_FIELDS
from gateway.records import UsageRecord

# Locks the users of a batch in id order (so two batches never deadlock over lock order), in
# a statement of its own: WRITE_USAGE then runs on a snapshot taken after the locks, and sees
# every record of these users committed before.
LOCK_USERS = "SELECT id FROM users WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE"

# The request ids of a batch already recorded in any month's partition (the primary key is per
# created_at: migration 0013), or already debited: the ledger reference outlives the partitions
# the retention drops. Run after LOCK_USERS, on a snapshot that sees every record of those
# users committed before. Correlated subqueries with LIMIT stay one index probe per id,
# however large the tables (as NOT EXISTS the planner may hash a whole table instead). A
# statement of its own: as a filter inside WRITE_USAGE it would make the planner expect a
# row or two and join the debits to the entries by nested loop (quadratic in the batch).
RECORDED = """
SELECT b.request_id FROM unnest($1::text[]) AS b(request_id)
WHERE (SELECT 1 FROM usage_records x WHERE x.request_id = b.request_id LIMIT 1) IS NOT NULL
   OR (SELECT 1 FROM ledger_entries e WHERE e.reference = 'usage:' || b.request_id
       LIMIT 1) IS NOT NULL
"""


def _sql_type(annotation: object) -> str:
    name = str(annotation)
    if name.startswith("int"):
        return "bigint"
    if name.startswith("datetime"):
        return "timestamptz"
    return "text"


# Every column but ``tags`` is read from the batch's JSON objects by name (the record's
# field names are the columns); ``tags`` is stored as a JSON object whose keys are the tags
# (migration 0008), passed beside them ($2, by position).
_READ = ", ".join(f"{f.name} {_sql_type(f.type)}" for f in fields(UsageRecord) if f.name != "tags")
_NAMES = ", ".join(name for name in USAGE_FIELDS if name != "tags")
_SELECT = ", ".join(
    "($2::json[])[b.position::int] AS tags" if name == "tags" else f"b.{name}"
    for name in USAGE_FIELDS
)
_KEY = ", ".join(KEY)
_SUMS = ", ".join(["count(*)"] + [f"sum({m})::bigint" for m in MEASURES[1:]])
_QUARTER = (
    "date_trunc('hour', i.created_at, 'UTC') + "
    "floor(extract(minute FROM i.created_at AT TIME ZONE 'UTC') / 15) * interval '15 min'"
)

WRITE_USAGE = f"""
-- Invariant, per user after commit: balance = SUM(ledger_entries.amount), version = the
-- number of entries, every request id is recorded and debited at most once, and in id order
-- each entry's balance_after is the previous one's plus its amount and its user_version the
-- previous one's plus one. Only the rows this statement actually inserted are debited, get
-- an entry and are added to the rollups. It is given only records of no committed request
-- (RECORDED, in the same transaction, after LOCK_USERS): a request id belongs to one user,
-- so no other batch can record it until we commit.
WITH fresh AS (
    SELECT {_SELECT}, b.position
    FROM ROWS FROM (jsonb_to_recordset($1::jsonb) AS ({_READ}))
         WITH ORDINALITY AS b({_NAMES}, position)
),
inserted AS (
    INSERT INTO usage_records ({USAGE_COLUMNS})
    SELECT {USAGE_COLUMNS} FROM fresh
    -- Same key order in every batch (no deadlock on the primary key).
    ORDER BY request_id, position
    ON CONFLICT (request_id, created_at) DO NOTHING
    RETURNING *
),
charged AS (
    SELECT user_id, sum(cost) AS total, count(*) AS entries
    FROM inserted WHERE cost > 0 GROUP BY user_id
),
debited AS (
    UPDATE users u SET balance = u.balance - c.total, version = u.version + c.entries
    FROM charged c WHERE u.id = c.user_id
    RETURNING u.id, u.balance, u.version
),
entries AS (
    INSERT INTO ledger_entries (user_id, kind, amount, balance_after, user_version, reference)
    SELECT i.user_id, 'usage', -i.cost,
           -- new balance + what this user's later records in the batch cost
           (d.balance + sum(i.cost) OVER everything - sum(i.cost) OVER so_far)::bigint,
           -- new version - how many of this user's entries in the batch come later
           d.version - count(*) OVER everything + count(*) OVER so_far,
           'usage:' || i.request_id
    FROM inserted i JOIN debited d ON d.id = i.user_id
    WHERE i.cost > 0
    WINDOW everything AS (PARTITION BY i.user_id),
           so_far AS (PARTITION BY i.user_id ORDER BY i.created_at, i.request_id
                      ROWS UNBOUNDED PRECEDING)
    -- Entry ids are drawn after this sort, so id order is the running-balance order.
    ORDER BY i.user_id, i.created_at, i.request_id
),
-- The rollup rows each inserted record adds to, as gateway/ledger/rollups.py ``deltas``
-- computes them for SQLite (tests/ledger/test_usage_storage.py holds the two equal).
dims AS (
    SELECT d.*, i.prompt_tokens, i.completion_tokens, i.cached_tokens, i.reasoning_tokens,
           i.cost
    FROM inserted i
    CROSS JOIN LATERAL (
        SELECT date_trunc('hour', i.created_at, 'UTC') AS hour,
               date_trunc('day', i.created_at, 'UTC') AS day
    ) t
    CROSS JOIN LATERAL (
        VALUES ('total', 'quarter', {_QUARTER}, '', '', '', '', ''),
               ('total', 'hour', t.hour, '', '', '', '', ''),
               ('total', 'day', t.day, '', '', '', '', ''),
               ('call', 'hour', t.hour, i.user_id, coalesce(i.key_id, ''), i.provider,
                i.model, ''),
               ('call', 'day', t.day, i.user_id, coalesce(i.key_id, ''), i.provider,
                i.model, '')
        UNION ALL
        SELECT a.dim, g.grain, g.at, i.user_id, '', '', '', a.grp
        FROM (VALUES ('hour', t.hour), ('day', t.day)) g(grain, at)
        CROSS JOIN (
            SELECT 'end_user', i.end_user WHERE i.end_user <> ''
            UNION ALL SELECT 'session', i.session_id WHERE i.session_id <> ''
            UNION ALL SELECT 'tagged', '' WHERE i.tags IS NOT NULL
            UNION ALL SELECT 'tag', k FROM json_object_keys(i.tags) k
        ) a(dim, grp)
    ) d({_KEY})
),
rolled AS (
    INSERT INTO usage_rollups ({_KEY}, {", ".join(MEASURES)})
    SELECT {_KEY}, {_SUMS} FROM dims
    GROUP BY {_KEY}
    -- Every writer locks the shared rows (the totals) in the same order: no deadlock.
    ORDER BY {_KEY}
    {ADD_ON_CONFLICT}
)
SELECT request_id FROM inserted
"""


def usage_batch(records: Sequence[UsageRecord]) -> tuple[str, list[str | None]]:
    """WRITE_USAGE's arguments: the records as one JSON array of objects (``created_at`` as
    RFC 3339 with its offset; a naive time is UTC), and each record's stored tags (a JSON
    object whose keys are the tags, or None), in the same order."""
    payload = orjson.dumps(records, option=orjson.OPT_NAIVE_UTC).decode()
    tags = [orjson.dumps(dict.fromkeys(r.tags, 1)).decode() if r.tags else None for r in records]
    return payload, tags
