-- Amounts are BIGINT nano-USD. Timestamps are timestamptz (UTC on the wire).
-- Constraint names are spelled out: gateway/ledger/postgres.py maps violations of them to
-- ledger errors.
CREATE TABLE users (
    id          text CONSTRAINT users_pkey PRIMARY KEY,
    email       text,
    balance     bigint NOT NULL DEFAULT 0,
    version     bigint NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    id          text PRIMARY KEY,
    user_id     text NOT NULL CONSTRAINT api_keys_user_fk REFERENCES users(id),
    key_hash    text NOT NULL UNIQUE,
    prefix      text NOT NULL,
    name        text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz,
    expires_at  timestamptz
);
CREATE INDEX api_keys_user ON api_keys(user_id);

-- Invariant: users.balance = SUM(ledger_entries.amount) per user, and in id order every
-- entry's balance_after = the previous entry's balance_after + its amount.
CREATE TABLE ledger_entries (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id       text NOT NULL CONSTRAINT ledger_entries_user_fk REFERENCES users(id),
    kind          text NOT NULL CHECK (kind IN ('grant','topup','usage','adjustment','refund')),
    amount        bigint NOT NULL,
    balance_after bigint NOT NULL,
    reference     text NOT NULL CONSTRAINT ledger_entries_reference_key UNIQUE,
    reason        text,
    actor         text,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ledger_entries_user ON ledger_entries(user_id, id);

CREATE TABLE usage_records (
    request_id         text PRIMARY KEY,
    user_id            text NOT NULL CONSTRAINT usage_records_user_fk REFERENCES users(id),
    key_id             text,
    model              text NOT NULL,
    provider           text NOT NULL,
    endpoint           text NOT NULL,
    prompt_tokens      bigint NOT NULL,
    completion_tokens  bigint NOT NULL,
    cached_tokens      bigint NOT NULL,
    reasoning_tokens   bigint NOT NULL,
    price_input        bigint NOT NULL,
    price_cached_input bigint,
    price_output       bigint NOT NULL,
    cost               bigint NOT NULL CHECK (cost >= 0),
    status             text NOT NULL,
    usage_source       text NOT NULL,
    latency_ms         bigint NOT NULL,
    created_at         timestamptz NOT NULL
);
CREATE INDEX usage_records_user_time ON usage_records(user_id, created_at DESC, request_id DESC);
CREATE INDEX usage_records_time ON usage_records(created_at);

CREATE TABLE audit_log (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    actor      text NOT NULL,
    action     text NOT NULL,
    target     text,
    amount     bigint,
    reason     text,
    details    jsonb,
    created_at timestamptz NOT NULL
);
CREATE INDEX audit_log_target ON audit_log(target, id);
-- list_audit filters by action alone too (e.g. every "credits.add").
CREATE INDEX audit_log_action ON audit_log(action, id);
