"""The two statements that move money in PostgreSQL; each states its invariant at its top."""

from __future__ import annotations

from gateway.ledger.schema import USAGE_COLUMNS

MOVE = """
-- Invariant: the balance and its entry change together; balance_after is the new balance.
-- The user's version after the change travels with the entry, so the balance store can tell
-- whether a balance it loaded already includes this change.
WITH moved AS (
    UPDATE users SET balance = balance + $3, version = version + 1 WHERE id = $1
    RETURNING balance, version
), ins AS (
    INSERT INTO ledger_entries (user_id, kind, amount, balance_after, reference, reason, actor)
    SELECT $1, $2, $3, moved.balance, $4, $5, $6 FROM moved
    RETURNING *
)
SELECT ins.*, (SELECT version FROM moved) AS user_version FROM ins
"""

WRITE_USAGE = f"""
-- Invariant, per user after commit: balance = SUM(ledger_entries.amount), every usage row is
-- recorded and debited at most once, and in id order each entry's balance_after is the
-- previous one's plus its amount. Only the rows this statement actually inserted (ON
-- CONFLICT DO NOTHING ... RETURNING) are debited and get an entry, so a replayed or
-- overlapping batch never moves money twice. The batch's users are locked first, in id
-- order: a concurrent batch for the same users waits for our commit, then finds our rows as
-- conflicts (conflict checks see committed rows, whatever the statement's snapshot) and
-- debits from the balance we left (UPDATE re-reads the newest row version).
WITH batch AS (
    SELECT * FROM unnest(
        $1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
        $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[],
        $12::bigint[], $13::bigint[], $14::bigint[], $15::text[], $16::text[],
        $17::bigint[], $18::timestamptz[]
    ) WITH ORDINALITY AS b({USAGE_COLUMNS}, position)
),
locked AS (
    SELECT id FROM users WHERE id IN (SELECT user_id FROM batch) ORDER BY id FOR UPDATE
),
inserted AS (
    INSERT INTO usage_records ({USAGE_COLUMNS})
    SELECT {USAGE_COLUMNS} FROM batch
    -- An InitPlan runs once before the first row: every lock is held before any insert.
    WHERE (SELECT count(*) FROM locked) >= 0
    -- Same key order in every batch (no deadlock on the primary key); within a batch the
    -- first occurrence of a request id wins, as it would record by record.
    ORDER BY request_id, position
    ON CONFLICT (request_id) DO NOTHING
    RETURNING request_id, user_id, cost, created_at
),
charged AS (
    SELECT user_id, sum(cost) AS total, count(*) AS entries
    FROM inserted WHERE cost > 0 GROUP BY user_id
),
debited AS (
    UPDATE users u SET balance = u.balance - c.total, version = u.version + c.entries
    FROM charged c WHERE u.id = c.user_id
    RETURNING u.id, u.balance
),
entries AS (
    INSERT INTO ledger_entries (user_id, kind, amount, balance_after, reference)
    SELECT i.user_id, 'usage', -i.cost,
           -- new balance + what this user's later records in the batch cost
           (d.balance + sum(i.cost) OVER everything - sum(i.cost) OVER so_far)::bigint,
           'usage:' || i.request_id
    FROM inserted i JOIN debited d ON d.id = i.user_id
    WHERE i.cost > 0
    WINDOW everything AS (PARTITION BY i.user_id),
           so_far AS (PARTITION BY i.user_id ORDER BY i.created_at, i.request_id
                      ROWS UNBOUNDED PRECEDING)
    -- Entry ids are drawn after this sort, so id order is the running-balance order.
    ORDER BY i.user_id, i.created_at, i.request_id
)
SELECT request_id FROM inserted
"""
