-- The price book: the prices in force as last loaded from models.yaml (gateway/prices.py).
-- Diffing a new catalog against it is what puts every price change in the audit trail, once,
-- whichever process (or restart) loaded the file. Prices are nano-USD per 1M tokens.
CREATE TABLE model_prices (
    model              TEXT PRIMARY KEY,
    provider           TEXT NOT NULL,
    upstream_model     TEXT NOT NULL,
    kind               TEXT NOT NULL,
    max_output_tokens  INTEGER NOT NULL,
    price_input        INTEGER NOT NULL,
    price_cached_input INTEGER,
    price_output       INTEGER NOT NULL,
    updated_at         TEXT NOT NULL
);

-- GET /admin/audit?action=... filters by action alone (the target index cannot serve it).
CREATE INDEX audit_log_action ON audit_log(action, id);

-- Covering indexes for the reports (gateway/ledger/reports.py): every column a report
-- aggregates rides in the index, so a report reads index pages only, never the table. Same
-- names and leading columns as 0001, so every query that used them still does.
-- usage_records_time: revenue per day (one range scan per day) and date-ranged reports.
DROP INDEX usage_records_time;
CREATE INDEX usage_records_time ON usage_records(created_at, user_id, provider, model,
    prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens, cost);
-- usage_records_user_time: usage pages, per-user stats, top users (already in user order).
DROP INDEX usage_records_user_time;
CREATE INDEX usage_records_user_time ON usage_records(user_id, created_at DESC,
    request_id DESC, provider, model, prompt_tokens, completion_tokens, cached_tokens,
    reasoning_tokens, cost);
