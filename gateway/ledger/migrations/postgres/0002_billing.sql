-- Stripe payments. Amounts are bigint nano-USD.
-- One row per Stripe event id: the id is the per-event guard, while money is guarded by the
-- unique ledger reference of the payment (a payment may arrive under several events).
CREATE TABLE stripe_events (
    event_id       text PRIMARY KEY,
    type           text NOT NULL,
    status         text NOT NULL,
    user_id        text,
    amount         bigint,
    currency       text,
    payment_ref    text,
    payment_intent text,
    detail         text,
    payload        text NOT NULL,
    attempts       integer NOT NULL DEFAULT 1,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX stripe_events_status ON stripe_events(status, created_at);
CREATE INDEX stripe_events_intent ON stripe_events(payment_intent);

-- What each cumulative refund level of a charge debits, fixed once per reference.
CREATE TABLE stripe_refund_debits (
    reference  text PRIMARY KEY,
    charge_id  text NOT NULL,
    user_id    text NOT NULL REFERENCES users(id),
    amount     bigint NOT NULL CHECK (amount >= 0),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX stripe_refund_debits_charge ON stripe_refund_debits(charge_id);

-- in_flight_intent: NULL, 'pending' (claimed, Stripe not yet answered) or a PaymentIntent id.
CREATE TABLE billing_profiles (
    user_id            text PRIMARY KEY REFERENCES users(id),
    stripe_customer_id text UNIQUE,
    auto_topup_enabled boolean NOT NULL DEFAULT false,
    threshold          bigint NOT NULL DEFAULT 0 CHECK (threshold >= 0),
    amount             bigint NOT NULL DEFAULT 0 CHECK (amount >= 0),
    in_flight_intent   text,
    in_flight_since    timestamptz,
    trigger_seq        bigint NOT NULL DEFAULT 0,
    last_error         text,
    updated_at         timestamptz NOT NULL DEFAULT now()
);
