"""Payments: Stripe Checkout top-ups, auto top-ups, refunds, low-balance signals.

    routes.py          HTTP: /webhooks/stripe, /me/checkout, /me/auto-topup, admin views
    stripe_webhook.py  signature check, event -> ledger entry (exactly once), replay
    checkout.py        Stripe customer + Checkout Session
    autotopup.py       low-balance header/log, off-session PaymentIntent on a threshold

Money arrives only through a verified webhook, and every credit is a ledger entry whose
reference names the payment (``stripe:<session or payment intent id>``), so a payment is
credited at most once however often, in whatever order or concurrency its events arrive.
The ledger moves first; the balance store hears of a change only after it committed.

This module holds what the others share: the config, the Stripe client factory and the
per-process ``Billing`` state. What payments store lives in the ledger (``Ledger.payments``,
the ``Payments`` port of gateway/ledger/ports.py); money moves through ``gateway.postings``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gateway.alerts.outbox import Alerts
from gateway.errors import Unavailable
from gateway.ledger.base import Ledger
from gateway.metering.store import BalanceStore
from gateway.postings import Postings
from gateway.records import Entry
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


# -- configuration -------------------------------------------------------------------------


@dataclass(frozen=True)
class BillingConfig:
    # Out of the repr: a settlement listener's repr (it holds Billing) goes into the log when
    # the listener fails (gateway.proxy.pipeline).
    api_key: str | None = field(repr=False)
    webhook_secret: str | None = field(repr=False)
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
    ledger: Ledger
    store: BalanceStore
    # user_id -> (enabled, threshold, valid until monotonic time): spares the hot path a
    # database read per settlement.
    profiles: dict[str, tuple[bool, int, float]] = field(default_factory=dict)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    # Operator alerts (auto top-up failed, refund shortfall); None: none sent.
    alerts: Alerts | None = None

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        currency: str,
        ledger: Ledger,
        store: BalanceStore,
        alerts: Alerts | None = None,
    ) -> Billing:
        """The payment dependencies, from settings validated at load (``Settings.from_env``)."""
        config = BillingConfig.from_settings(settings, currency=currency)
        return cls(config=config, ledger=ledger, store=store, alerts=alerts)

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
    return await Postings(billing.ledger.journal, billing.store).post(
        user_id, kind=kind, amount=delta, reference=reference, reason=reason, actor="stripe"
    )
