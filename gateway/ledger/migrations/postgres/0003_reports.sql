-- The price book: the prices in force as last loaded from models.yaml (gateway/prices.py).
-- Diffing a new catalog against it is what puts every price change in the audit trail, once,
-- whichever process (or restart) loaded the file. Prices are nano-USD per 1M tokens.
CREATE TABLE model_prices (
    model              text PRIMARY KEY,
    provider           text NOT NULL,
    upstream_model     text NOT NULL,
    kind               text NOT NULL,
    max_output_tokens  bigint NOT NULL,
    price_input        bigint NOT NULL,
    price_cached_input bigint,
    price_output       bigint NOT NULL,
    updated_at         timestamptz NOT NULL DEFAULT now()
);

-- Covering indexes for the reports (gateway/ledger/reports.py): with the aggregated
-- columns INCLUDEd, a report is an index-only scan. Same names and keys as 0001, so every
-- query that used them still does. usage_records_time serves revenue per day (one range scan
-- per day) and date-ranged reports; usage_records_user_time usage pages and per-user stats.
DROP INDEX usage_records_time;
CREATE INDEX usage_records_time ON usage_records(created_at)
    INCLUDE (user_id, provider, model, prompt_tokens, completion_tokens, cached_tokens,
             reasoning_tokens, cost);
DROP INDEX usage_records_user_time;
CREATE INDEX usage_records_user_time ON usage_records(user_id, created_at DESC, request_id DESC)
    INCLUDE (provider, model, prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens,
             cost);
