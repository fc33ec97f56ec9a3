"""Stripe Checkout: the user's Stripe customer and a Checkout Session for a top-up.

Creating a session moves no money: the credit arrives only with the signed webhook. The
session names the user three ways (client_reference_id, session metadata, PaymentIntent
metadata) so the webhook can find them whichever one Stripe shows.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from gateway.billing import PURPOSE_CHECKOUT, Billing, nanos_to_cents, stripe_client, whole_cents
from gateway.errors import Conflict, Unprocessable, UpstreamError
from gateway.money import format_usd, parse_amount
from gateway.records import BillingProfile, User

if TYPE_CHECKING:
    import stripe
    from stripe.params._customer_create_params import CustomerCreateParams
    from stripe.params.checkout._session_create_params import (
        SessionCreateParamsPaymentIntentData,
    )

PRODUCT_NAME = "Gateway credit"


async def create_checkout(
    billing: Billing, user: User, value: object, *, request_key: str | None = None
) -> dict[str, Any]:
    """A Checkout Session for ``value`` USD; ``request_key`` makes a client's retry safe."""
    import stripe

    config = billing.config
    amount = parse_amount(value)
    if not whole_cents(amount) or not config.min_amount <= amount <= config.max_amount:
        raise Unprocessable(
            f"amount must be whole cents between {format_usd(config.min_amount)} and "
            f"{format_usd(config.max_amount)} USD",
            param="amount",
            code="invalid_amount",
        )
    profile = await billing.ledger.payments.get_billing_profile(user.id) or BillingProfile(user.id)
    intent_data: SessionCreateParamsPaymentIntentData = {
        "metadata": {"user_id": user.id, "purpose": PURPOSE_CHECKOUT}
    }
    if profile.auto_topup_enabled:
        # Saves the card on the customer for the off-session PaymentIntents of auto top-up.
        intent_data["setup_future_usage"] = "off_session"
    try:
        async with stripe_client(config) as client:
            customer = await ensure_customer(billing, client, user, profile)
            session = await client.v1.checkout.sessions.create_async(
                {
                    "mode": "payment",
                    "customer": customer,
                    "client_reference_id": user.id,
                    "metadata": {"user_id": user.id},
                    "line_items": [
                        {
                            "quantity": 1,
                            "price_data": {
                                "currency": config.currency,
                                "unit_amount": nanos_to_cents(amount),
                                "product_data": {"name": PRODUCT_NAME},
                            },
                        }
                    ],
                    "payment_intent_data": intent_data,
                    "success_url": config.success_url,
                    "cancel_url": config.cancel_url,
                },
                {
                    "idempotency_key": f"gateway-checkout-{user.id}-"
                    f"{request_key or uuid.uuid4().hex}"
                },
            )
    except stripe.IdempotencyError as exc:
        raise Conflict(
            "this Idempotency-Key was used for a different checkout", code="idempotency_conflict"
        ) from exc
    except stripe.StripeError as exc:
        raise UpstreamError(
            f"Stripe refused the checkout: {exc.user_message or exc}", code="stripe_error"
        ) from exc
    return {
        "id": session.id,
        "url": session.url,
        "amount": format_usd(amount),
        "currency": config.currency,
        "save_card": profile.auto_topup_enabled,
    }


async def ensure_customer(
    billing: Billing, client: stripe.StripeClient, user: User, profile: BillingProfile
) -> str:
    """The user's Stripe customer, created once (racing creators keep the first one)."""
    if profile.stripe_customer_id:
        return profile.stripe_customer_id
    params: CustomerCreateParams = {"metadata": {"user_id": user.id}}
    if user.email:
        params["email"] = user.email
    # Keyed by user: two concurrent first checkouts get the same customer back from Stripe.
    customer = await client.v1.customers.create_async(
        params, {"idempotency_key": f"gateway-customer-{user.id}"}
    )
    return await billing.ledger.payments.set_stripe_customer(user.id, customer.id)
