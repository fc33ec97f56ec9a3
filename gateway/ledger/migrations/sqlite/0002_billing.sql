-- Stripe payments. Amounts are integer nano-USD; timestamps UTC text like 0001.
-- One row per Stripe event id: the id is the per-event guard, while money is guarded by the
-- unique ledger reference of the payment (a payment may arrive under several events).
CREATE TABLE stripe_events (
    event_id       TEXT PRIMARY KEY,
    type           TEXT NOT NULL,
    status         TEXT NOT NULL,
    user_id        TEXT,
    amount         INTEGER,
    currency       TEXT,
    payment_ref    TEXT,
    payment_intent TEXT,
    detail         TEXT,
    payload        TEXT NOT NULL,
    attempts       INTEGER NOT NULL DEFAULT 1,
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL
);
CREATE INDEX stripe_events_status ON stripe_events(status, created_at);
CREATE INDEX stripe_events_intent ON stripe_events(payment_intent);

-- What each cumulative refund level of a charge debits, fixed once per reference.
CREATE TABLE stripe_refund_debits (
    reference  TEXT PRIMARY KEY,
    charge_id  TEXT NOT NULL,
    user_id    TEXT NOT NULL REFERENCES users(id),
    amount     INTEGER NOT NULL CHECK (amount >= 0),
    created_at TEXT NOT NULL
);
CREATE INDEX stripe_refund_debits_charge ON stripe_refund_debits(charge_id);

-- in_flight_intent: NULL, 'pending' (claimed, Stripe not yet answered) or a PaymentIntent id.
CREATE TABLE billing_profiles (
    user_id            TEXT PRIMARY KEY REFERENCES users(id),
    stripe_customer_id TEXT UNIQUE,
    auto_topup_enabled INTEGER NOT NULL DEFAULT 0,
    threshold          INTEGER NOT NULL DEFAULT 0 CHECK (threshold >= 0),
    amount             INTEGER NOT NULL DEFAULT 0 CHECK (amount >= 0),
    in_flight_intent   TEXT,
    in_flight_since    TEXT,
    trigger_seq        INTEGER NOT NULL DEFAULT 0,
    last_error         TEXT,
    updated_at         TEXT NOT NULL
)
