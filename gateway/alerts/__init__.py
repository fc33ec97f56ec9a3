"""Operator alerts: signed webhooks, delivered at least once from a durable outbox.

    events.py     the event types and their payloads (pure)
    signature.py  the ``x-gateway-signature`` header: Stripe's scheme, sign and verify
    outbox.py     ``Alerts``: addresses events to the configured endpoints and writes them
                  to the outbox (``Ledger.webhooks``), now or buffered from the hot path
    sender.py     ``Sender``: the background task that claims due rows and POSTs them, with
                  retries and exponential backoff
    listing.py    ``GET /admin/webhooks/deliveries``

An event caused by a ledger write is written in that write's transaction (auto top-up failed,
refund shortfall); one seen on the hot path (low balance) is buffered and written a moment
later by the sender. Every row is sent by one process at a time (a lease in the database);
a receiver that still sees an event twice dedups on its ``id``.
"""
