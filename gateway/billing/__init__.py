"""Payments: Stripe Checkout top-ups, auto top-ups, refunds, low-balance signals.

    routes.py          HTTP: /webhooks/stripe, /me/checkout, /me/auto-topup, admin views
    stripe_webhook.py  signature check, event -> ledger entry (exactly once), replay
    checkout.py        Stripe customer + Checkout Session
    autotopup.py       low-balance header/log, off-session PaymentIntent on a threshold

Money arrives only through a verified webhook, and every credit is a ledger entry whose
reference names the payment (``stripe:<session or payment intent id>``), so a payment is
credited at most once however often, in whatever order or concurrency its events arrive.
The ledger moves first; the balance store hears of a change only after it committed.

This module holds what the others share: the config, the records the ledger mixins return,
the ``BillingLedger`` port they implement, and the Stripe client factory.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from gateway.errors import Unavailable
from gateway.ledger.base import Ledger
from gateway.metering.store import BalanceStore
from gateway.postings import Postings
from gateway.records import BillingProfile, Entry, StripeEvent, TopupClaim
from gateway.settings import Settings

if TYPE_CHECKING:
    import stripe

# Stripe amounts are integers of the currency's minor unit; USD has cents.
NANOS_PER_CENT = 10**7
PURPOSE_AUTO_TOPUP = "auto_topup"
PURPOSE_CHECKOUT = "checkout"


def cents_to_nanos(cents: int) -> int:
    return cents * NANOS_PER_CENT


def nanos_to_cents(nanos: int) -> int:
    """Exact only for whole cents; callers validate with ``whole_cents`` first."""
    return nanos // NANOS_PER_CENT


def whole_cents(nanos: int) -> bool:
    return nanos % NANOS_PER_CENT == 0


# -- records the ledger mixins hand back ---------------------------------------------------


class BillingLedger(Ledger, Protocol):
    """What the ledger mixins (``SqliteBillingMixin``, ``PostgresBillingMixin``) add.

    - ``claim_stripe_event`` records an event id once; it returns None the first time and
      the stored status afterwards (the caller skips final statuses).
    - ``finish_stripe_event`` writes the outcome only while the row is still retryable, so
      the first finisher of concurrent deliveries wins and a final outcome never changes.
    - ``plan_refund_debit`` serialises refunds of one charge: under a per-charge lock it
      fixes how much this cumulative refund level still has to debit, once per reference.
    - ``debit_up_to`` posts ``-min(amount, balance)`` atomically (a refund after the credit
      was spent takes what is left; the ledger never goes below zero for payments).
    - ``claim_auto_topup`` is the cross-process guard: it succeeds only for an enabled
      profile with no PaymentIntent in flight (or a stale unanswered claim, which keeps its
      ``seq`` so the retry reuses the same idempotency key).
    """

    async def claim_stripe_event(self, event: StripeEvent) -> str | None: ...

    async def finish_stripe_event(self, outcome: StripeEvent) -> None: ...

    async def list_stripe_events(
        self, *, status: str | None, limit: int, offset: int
    ) -> tuple[list[StripeEvent], bool]: ...

    async def find_stripe_credit(self, payment_intent: str) -> tuple[str, int] | None:
        """(user_id, credited nano-USD) of the credited payment behind a PaymentIntent."""

    async def plan_refund_debit(
        self, *, charge_id: str, reference: str, user_id: str, target_total: int
    ) -> int: ...

    async def debit_up_to(
        self,
        user_id: str,
        *,
        kind: str,
        amount: int,
        reference: str,
        reason: str | None,
        actor: str | None,
    ) -> Entry: ...

    async def get_billing_profile(self, user_id: str) -> BillingProfile | None: ...

    async def save_auto_topup(
        self, user_id: str, *, enabled: bool, threshold: int, amount: int
    ) -> BillingProfile: ...

    async def set_stripe_customer(self, user_id: str, customer_id: str) -> str:
        """Stores the customer unless one is stored already; returns the stored one."""

    async def claim_auto_topup(self, user_id: str, *, stale_after: float) -> TopupClaim | None: ...

    async def set_topup_intent(self, user_id: str, *, seq: int, intent_id: str) -> None: ...

    async def finish_auto_topup(
        self, user_id: str, *, intent_id: str | None, seq: int | None, failure: str | None
    ) -> None:
        """Clears this trigger's in-flight marker; a ``failure`` also disables auto top-up."""


# -- configuration -------------------------------------------------------------------------


@dataclass(frozen=True)
class BillingConfig:
    api_key: str | None
    webhook_secret: str | None
    currency: str
    success_url: str
    cancel_url: str
    min_amount: int
    max_amount: int
    tolerance: int = 300
    # A trigger that got no answer from Stripe (crash, timeout) may be retried after this.
    topup_stale_after: float = 600.0

    @classmethod
    def from_settings(cls, settings: Settings, *, currency: str = "usd") -> BillingConfig:
        base = settings.public_url.rstrip("/")
        return cls(
            api_key=settings.stripe_api_key,
            webhook_secret=settings.stripe_webhook_secret,
            currency=currency.lower(),
            success_url=settings.checkout_success_url
            or f"{base}/billing/success?session_id={{CHECKOUT_SESSION_ID}}",
            cancel_url=settings.checkout_cancel_url or f"{base}/billing/cancelled",
            min_amount=settings.checkout_min,
            max_amount=settings.checkout_max,
        )


# -- the Stripe client ---------------------------------------------------------------------


def _httpx_client() -> stripe.HTTPXClient:
    import stripe

    class ContentHTTPXClient(stripe.HTTPXClient):
        # stripe 16 hands its form-encoded body to httpx as ``data=<str>``, which httpx 0.28
        # deprecates with a warning (an error under our test settings); ``content=`` sends
        # the same bytes.
        def _get_request_args_kwargs(
            self, method: str, url: str, headers: Mapping[str, str], post_data: Any
        ) -> Any:
            args, kwargs = super()._get_request_args_kwargs(method, url, headers, post_data)
            data = kwargs.pop("data", None)
            if data:
                kwargs["content"] = data
            return [args, kwargs]

    return ContentHTTPXClient()


@contextlib.asynccontextmanager
async def stripe_client(config: BillingConfig) -> AsyncIterator[stripe.StripeClient]:
    """A client for a few calls; Stripe calls are rare, so no pool outlives them."""
    import stripe

    if not config.api_key:
        raise Unavailable(
            "payments are not configured: STRIPE_API_KEY is not set", code="payments_not_configured"
        )
    http = _httpx_client()
    try:
        # Retries reuse our idempotency key, so a retried POST cannot double-charge.
        yield stripe.StripeClient(config.api_key, http_client=http, max_network_retries=2)
    finally:
        await http.close_async()  # type: ignore[no-untyped-call]  # untyped in stripe 16


# -- the per-process billing state ---------------------------------------------------------


@dataclass
class Billing:
    """Dependencies of the payment code plus the little state auto top-up keeps in-process."""

    config: BillingConfig
    ledger: BillingLedger
    store: BalanceStore
    # user_id -> (enabled, threshold, valid until monotonic time): spares the hot path a
    # database read per settlement.
    profiles: dict[str, tuple[bool, int, float]] = field(default_factory=dict)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @classmethod
    def from_settings(
        cls, settings: Settings, *, currency: str, ledger: Ledger, store: BalanceStore
    ) -> Billing:
        """The payment dependencies, from settings validated at load (``Settings.from_env``)."""
        config = BillingConfig.from_settings(settings, currency=currency)
        return cls(config=config, ledger=ledger, store=store)  # type: ignore[arg-type]

    def forget(self, user_id: str) -> None:
        self.profiles.pop(user_id, None)

    async def close(self, grace: float = 10.0) -> None:
        """Lets running top-up triggers finish (bounded), so none is cut mid-call."""
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=grace)


async def credit(
    billing: Billing, user_id: str, *, kind: str, delta: int, reference: str, reason: str | None
) -> Entry:
    """A payment's credit, through the one money path (idempotent on ``reference``)."""
    return await Postings(billing.ledger, billing.store).post(
        user_id, kind=kind, amount=delta, reference=reference, reason=reason, actor="stripe"
    )
