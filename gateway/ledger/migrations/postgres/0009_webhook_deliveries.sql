-- Operator alert webhooks: the durable outbox (gateway/alerts). One row per event and
-- endpoint.
-- event_id is what the receiver dedups on (the same on every attempt and endpoint),
-- dedup_key names the occurrence that caused the event (e.g. a refund reference), so the
-- same occurrence written twice (a redelivered Stripe event, two processes) is one row.
-- endpoint is the URL without credentials or query (the full URL stays in the settings:
-- endpoint_hash, its SHA-256, finds it again). payload is the exact JSON body sent.
-- status: pending | delivered | failed. While a sender holds a pending row, next_attempt_at
-- is its lease's end and claim its token: a crashed sender's row falls due again by itself.
CREATE TABLE webhook_deliveries (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id        text NOT NULL,
    type            text NOT NULL,
    dedup_key       text NOT NULL,
    endpoint        text NOT NULL,
    endpoint_hash   text NOT NULL,
    payload         text NOT NULL,
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    claim           text,
    last_status     integer,
    last_error      text,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    delivered_at    timestamptz,
    UNIQUE (dedup_key, endpoint_hash)
);
-- The sender's query: due pending rows, oldest due first.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(status, next_attempt_at);
CREATE INDEX webhook_deliveries_type ON webhook_deliveries(type, id);
