"""Low-balance signals and auto top-up, both driven by settlements.

Two settlement listeners (``gateway.listeners``), registered in ``gateway.services.build``.
They run on the hot path, so they are synchronous and read no database. ``LowBalanceSignal``
compares the balance with the configured thresholds: a header and a structured log when one
is crossed. ``AutoTopUp`` starts a background check when the settlement crossed the user's
auto top-up threshold (or that threshold is not cached yet). Only a crossing triggers: one
top-up per crossing.

The check claims the user's top-up slot in the database (one statement; the guard across
processes), then creates one off-session PaymentIntent whose idempotency key names the
trigger. Credit never comes from here: only the ``payment_intent.succeeded`` webhook credits.
A failure disables auto top-up for the user and lands in the audit log.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gateway.alerts import events
from gateway.alerts.outbox import Alerts
from gateway.billing import (
    PURPOSE_AUTO_TOPUP,
    Billing,
    BillingConfig,
    nanos_to_cents,
    stripe_client,
    whole_cents,
)
from gateway.errors import GatewayError, NotFound, Unavailable, Unprocessable
from gateway.events import emit
from gateway.ledger.base import UnknownUser
from gateway.money import MoneyError, format_usd, parse_usd
from gateway.records import AuditEvent, BillingProfile, TopupClaim, UsageRecord

log = logging.getLogger("gateway.billing")
LOW_BALANCE_HEADER = b"x-gateway-low-balance"
# How long a process trusts its cached view of a user's auto top-up settings.
PROFILE_TTL = 30.0
PROFILES_CACHED = 100_000


class TopupFailure(Exception):
    pass


# -- the settlement listeners --------------------------------------------------------------


def crossed(warn: int, critical: int, before: int, after: int) -> tuple[str, int] | None:
    """The most severe threshold this change went below: ("critical"|"warning", threshold)."""
    for level, threshold in (("critical", critical), ("warning", warn)):
        if before >= threshold > after:
            return level, threshold
    return None


def low_balance_header(level: str, balance: int, threshold: int) -> tuple[bytes, bytes]:
    value = f"{level}; balance={format_usd(balance)}; threshold={format_usd(threshold)}"
    return LOW_BALANCE_HEADER, value.encode()


@dataclass(frozen=True, slots=True)
class LowBalanceSignal:
    """Settlement listener: a header, a structured log and a ``balance.low`` alert when a
    call takes the balance below ``warn`` or ``critical`` (nano-USD)."""

    warn: int
    critical: int
    alerts: Alerts | None = None

    def __call__(self, record: UsageRecord, balance: int | None) -> Sequence[tuple[bytes, bytes]]:
        if balance is None:
            return ()
        hit = crossed(self.warn, self.critical, balance + record.cost, balance)
        if hit is None:
            return ()
        level, threshold = hit
        emit(
            log,
            logging.WARNING,
            "low_balance",
            user_id=record.user_id,
            level=level,
            balance=format_usd(balance),
            threshold=format_usd(threshold),
            request_id=record.request_id,
        )
        if self.alerts is not None:
            self.alerts.notify(
                events.balance_low(
                    user_id=record.user_id,
                    level=level,
                    balance=balance,
                    threshold=threshold,
                    request_id=record.request_id,
                )
            )
        return (low_balance_header(level, balance, threshold),)


@dataclass(frozen=True, slots=True)
class AutoTopUp:
    """Settlement listener: starts an auto top-up check when a call crosses the user's
    threshold; adds no header."""

    billing: Billing

    def __call__(self, record: UsageRecord, balance: int | None) -> Sequence[tuple[bytes, bytes]]:
        if balance is not None:
            maybe_top_up(self.billing, record.user_id, balance + record.cost, balance)
        return ()


def maybe_top_up(billing: Billing, user_id: str, before: int, after: int) -> None:
    cached = billing.profiles.get(user_id)
    if cached is not None and cached[2] > time.monotonic():
        armed, threshold, _ = cached
        if not armed or not before >= threshold > after:
            return
    if any(task.get_name() == f"autotopup:{user_id}" for task in billing.tasks):
        return  # one check per user at a time in this process
    task = asyncio.get_running_loop().create_task(
        _check(billing, user_id, before, after), name=f"autotopup:{user_id}"
    )
    billing.tasks.add(task)
    task.add_done_callback(billing.tasks.discard)


async def _check(billing: Billing, user_id: str, before: int, after: int) -> None:
    def remember(armed: bool, threshold: int) -> None:
        if len(billing.profiles) > PROFILES_CACHED:
            billing.profiles.clear()
        billing.profiles[user_id] = (armed, threshold, time.monotonic() + PROFILE_TTL)

    try:
        profile = await billing.ledger.payments.get_billing_profile(user_id)
        if profile is None or not profile.auto_topup_enabled:
            remember(False, 0)
            return
        if profile.in_flight_intent is not None:
            remember(False, profile.threshold)  # the webhook that settles it re-arms us
            return
        remember(True, profile.threshold)
        # Only the settlement that crosses the threshold triggers: one top-up per crossing,
        # even when the top-up amount leaves the balance below the threshold.
        if not before >= profile.threshold > after:
            return
        claim = await billing.ledger.payments.claim_auto_topup(
            user_id, stale_after=billing.config.topup_stale_after
        )
        remember(False, profile.threshold)
        if claim is not None:
            await _create_intent(billing, claim)
    except Exception:
        # An unanswered claim stays 'pending' and becomes claimable again once stale.
        log.exception("auto top-up check failed for %s", user_id)


async def _create_intent(billing: Billing, claim: TopupClaim) -> None:
    import stripe

    config = billing.config
    try:
        if not claim.stripe_customer_id:
            raise TopupFailure("no saved card: pay once through checkout with auto top-up on")
        async with stripe_client(config) as client:
            cards = await client.v1.payment_methods.list_async(
                {"customer": claim.stripe_customer_id, "type": "card", "limit": 1}
            )
            if not cards.data:
                raise TopupFailure("no saved card: pay once through checkout with auto top-up on")
            intent = await client.v1.payment_intents.create_async(
                {
                    "amount": nanos_to_cents(claim.amount),
                    "currency": config.currency,
                    "customer": claim.stripe_customer_id,
                    "payment_method": cards.data[0].id,
                    "off_session": True,
                    "confirm": True,
                    "description": "Gateway credit (auto top-up)",
                    "metadata": {
                        "user_id": claim.user_id,
                        "purpose": PURPOSE_AUTO_TOPUP,
                        "trigger": str(claim.seq),
                    },
                },
                # Per trigger: a retried or re-driven trigger can never charge twice.
                {"idempotency_key": f"gateway-autotopup-{claim.user_id}-{claim.seq}"},
            )
        if intent.status not in ("succeeded", "processing"):
            raise TopupFailure(f"payment intent {intent.id} is {intent.status}")
    except (stripe.StripeError, TopupFailure, GatewayError) as exc:
        reason = getattr(exc, "user_message", None) or getattr(exc, "message", None) or str(exc)
        error = getattr(exc, "error", None)
        intent_id = getattr(getattr(error, "payment_intent", None), "id", None)
        await record_failure(
            billing, claim.user_id, intent_id=intent_id, seq=claim.seq, reason=reason
        )
        return
    await billing.ledger.payments.set_topup_intent(
        claim.user_id, seq=claim.seq, intent_id=intent.id
    )
    emit(
        log,
        logging.INFO,
        "auto_topup",
        user_id=claim.user_id,
        payment_intent=intent.id,
        amount=format_usd(claim.amount),
        trigger=claim.seq,
    )


async def record_failure(
    billing: Billing, user_id: str, *, intent_id: str | None, seq: int | None, reason: str
) -> None:
    """Disables auto top-up for the user, so a declined card is not retried forever; the
    ``auto_topup.failed`` alert commits with it."""
    event = events.auto_topup_failed(
        user_id=user_id, reason=reason, payment_intent=intent_id, trigger=seq
    )
    await billing.ledger.payments.finish_auto_topup(
        user_id,
        intent_id=intent_id,
        seq=seq,
        failure=reason,
        alerts=billing.alerts.address(event) if billing.alerts else (),
    )
    billing.forget(user_id)
    await billing.ledger.audit.record_audit(
        AuditEvent(
            actor="billing",
            action="autotopup.failed",
            target=user_id,
            reason=reason,
            details={"payment_intent": intent_id, "trigger": seq},
        )
    )
    emit(
        log,
        logging.WARNING,
        "auto_topup_failed",
        user_id=user_id,
        payment_intent=intent_id,
        reason=reason,
    )


# -- settings ------------------------------------------------------------------------------


async def configure(
    billing: Billing, user_id: str, data: dict[str, Any], *, actor: str
) -> BillingProfile:
    """PUT /me/auto-topup and its admin twin: {enabled, threshold, amount} (USD strings)."""
    enabled = data.get("enabled")
    if not isinstance(enabled, bool):
        raise Unprocessable("enabled must be true or false", param="enabled")
    if enabled:
        _require_payments(billing.config)
    current = await billing.ledger.payments.get_billing_profile(user_id) or BillingProfile(user_id)
    threshold = _usd(data, "threshold", current.threshold, enabled, allow_zero=True)
    amount = _usd(data, "amount", current.amount, enabled, allow_zero=False)
    if enabled:
        cfg = billing.config
        if threshold > cfg.max_amount:
            raise Unprocessable(
                f"threshold must be at most {format_usd(cfg.max_amount)} USD",
                param="threshold",
                code="invalid_amount",
            )
        if not whole_cents(amount) or not cfg.min_amount <= amount <= cfg.max_amount:
            raise Unprocessable(
                f"amount must be whole cents between {format_usd(cfg.min_amount)} and "
                f"{format_usd(cfg.max_amount)} USD",
                param="amount",
                code="invalid_amount",
            )
    try:
        profile = await billing.ledger.payments.save_auto_topup(
            user_id, enabled=enabled, threshold=threshold, amount=amount
        )
    except UnknownUser as exc:
        raise NotFound(f"no user {user_id!r}", code="user_not_found") from exc
    billing.forget(user_id)
    await billing.ledger.audit.record_audit(
        AuditEvent(
            actor=actor,
            action="autotopup.configure",
            target=user_id,
            amount=amount or None,
            details={"enabled": enabled, "threshold": format_usd(threshold)},
        )
    )
    return profile


def _require_payments(config: BillingConfig) -> None:
    """Auto top-up charges through the Stripe API and credits on the webhook: without either
    key it could never work (or would charge a card whose credit never arrives)."""
    missing = [
        name
        for name, value in (
            ("STRIPE_API_KEY", config.api_key),
            ("STRIPE_WEBHOOK_SECRET", config.webhook_secret),
        )
        if not value
    ]
    if missing:
        raise Unavailable(
            f"auto top-up cannot be enabled: payments are not configured on this gateway "
            f"({' and '.join(missing)} not set)",
            code="payments_not_configured",
            param="enabled",
        )


def _usd(data: dict[str, Any], name: str, current: int, required: bool, *, allow_zero: bool) -> int:
    value = data.get(name)
    if value is None:
        if required and not current and not allow_zero:
            raise Unprocessable(f"{name} is required to enable auto top-up", param=name)
        return current
    try:
        return parse_usd(value, allow_zero=allow_zero)
    except MoneyError as exc:
        raise Unprocessable(f"{name}: {exc}", param=name, code="invalid_amount") from exc
