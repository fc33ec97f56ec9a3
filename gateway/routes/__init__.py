"""The HTTP surfaces besides /v1: the admin API (generated from gateway.actions), the caller's
own view (/me) and payments (Stripe webhook, checkout, auto top-up).

They sit above the features they expose and the composition root (``gateway.services``), so
no feature package imports HTTP code and no cycle runs through ``services``."""
