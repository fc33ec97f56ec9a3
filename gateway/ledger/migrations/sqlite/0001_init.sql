-- Amounts are integer nano-USD. Timestamps are UTC text 'YYYY-MM-DD HH:MM:SS.ffffff'.
CREATE TABLE users (
    id          TEXT PRIMARY KEY,
    email       TEXT,
    balance     INTEGER NOT NULL DEFAULT 0,
    version     INTEGER NOT NULL DEFAULT 0,
    created_at  TEXT NOT NULL
);

CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users(id),
    key_hash    TEXT NOT NULL UNIQUE,
    prefix      TEXT NOT NULL,
    name        TEXT,
    created_at  TEXT NOT NULL,
    revoked_at  TEXT,
    expires_at  TEXT
);
CREATE INDEX api_keys_user ON api_keys(user_id);

-- Invariant: users.balance = SUM(ledger_entries.amount) per user.
CREATE TABLE ledger_entries (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id       TEXT NOT NULL REFERENCES users(id),
    kind          TEXT NOT NULL CHECK (kind IN ('grant','topup','usage','adjustment','refund')),
    amount        INTEGER NOT NULL,
    balance_after INTEGER NOT NULL,
    reference     TEXT NOT NULL UNIQUE,
    reason        TEXT,
    actor         TEXT,
    created_at    TEXT NOT NULL
);
CREATE INDEX ledger_entries_user ON ledger_entries(user_id, id);

CREATE TABLE usage_records (
    request_id         TEXT PRIMARY KEY,
    user_id            TEXT NOT NULL REFERENCES users(id),
    key_id             TEXT,
    model              TEXT NOT NULL,
    provider           TEXT NOT NULL,
    endpoint           TEXT NOT NULL,
    prompt_tokens      INTEGER NOT NULL,
    completion_tokens  INTEGER NOT NULL,
    cached_tokens      INTEGER NOT NULL,
    reasoning_tokens   INTEGER NOT NULL,
    price_input        INTEGER NOT NULL,
    price_cached_input INTEGER,
    price_output       INTEGER NOT NULL,
    cost               INTEGER NOT NULL CHECK (cost >= 0),
    status             TEXT NOT NULL,
    usage_source       TEXT NOT NULL,
    latency_ms         INTEGER NOT NULL,
    created_at         TEXT NOT NULL
);
CREATE INDEX usage_records_user_time ON usage_records(user_id, created_at DESC, request_id DESC);
CREATE INDEX usage_records_time ON usage_records(created_at);

CREATE TABLE audit_log (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    target     TEXT,
    amount     INTEGER,
    reason     TEXT,
    details    TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX audit_log_target ON audit_log(target, id);
