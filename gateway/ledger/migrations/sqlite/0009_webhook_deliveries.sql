-- Operator alert webhooks: the durable outbox (gateway/alerts). One row per event and
-- endpoint; timestamps UTC text like 0001.
-- event_id is what the receiver dedups on (the same on every attempt and endpoint),
-- dedup_key names the occurrence that caused the event (e.g. a refund reference), so the
-- same occurrence written twice (a redelivered Stripe event, two processes) is one row.
-- endpoint is the URL without credentials or query (the full URL stays in the settings:
-- endpoint_hash, its SHA-256, finds it again). payload is the exact JSON body sent.
-- status: pending | delivered | failed. While a sender holds a pending row, next_attempt_at
-- is its lease's end and claim its token: a crashed sender's row falls due again by itself.
CREATE TABLE webhook_deliveries (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id        TEXT NOT NULL,
    type            TEXT NOT NULL,
    dedup_key       TEXT NOT NULL,
    endpoint        TEXT NOT NULL,
    endpoint_hash   TEXT NOT NULL,
    payload         TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    claim           TEXT,
    last_status     INTEGER,
    last_error      TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    delivered_at    TEXT,
    UNIQUE (dedup_key, endpoint_hash)
);
-- The sender's query: due pending rows, oldest due first.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(status, next_attempt_at);
CREATE INDEX webhook_deliveries_type ON webhook_deliveries(type, id);
