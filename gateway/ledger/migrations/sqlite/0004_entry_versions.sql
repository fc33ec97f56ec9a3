-- Every ledger entry stores the user's ledger version right after it, so a balance loaded at
-- version v can be brought up to date with the entries whose user_version > v (the reconciler
-- of the balance cache) and a credit can carry the version it produced.
--
-- Invariant (gateway/ledger/ports.py, Journal): users.version grows by exactly one per entry
-- (a post bumps it by one with the entry it writes, a usage batch by the number of entries it
-- writes, and nothing else changes it), and the single writer appends entries in the order
-- the balance moved. So an existing entry's version is its position among its user's entries
-- in id order, and users.version = the user's entry count = their last entry's user_version.
-- (SQLite cannot add a NOT NULL column without a default: every insert sets it.)
ALTER TABLE ledger_entries ADD COLUMN user_version INTEGER;

UPDATE ledger_entries SET user_version = n.position
FROM (
    SELECT id, row_number() OVER (PARTITION BY user_id ORDER BY id) AS position
    FROM ledger_entries
) AS n
WHERE ledger_entries.id = n.id;

-- One entry per user and version; serves Journal.entries_after (user_version > v, in order).
CREATE UNIQUE INDEX ledger_entries_user_version ON ledger_entries(user_id, user_version)
