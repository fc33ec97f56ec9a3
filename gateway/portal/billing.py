"""Buying credit: an amount sent to Stripe Checkout (gateway/billing/checkout.py, as
POST /me/checkout), the pages Stripe returns the user to, and the auto top-up settings
(gateway/billing/autotopup.py, as PUT /me/auto-topup).

A payment moves no money here: the credit arrives with Stripe's signed webhook, so the
success page says so and shows the balance as it is at that moment.
"""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from gateway.billing.autotopup import configure
from gateway.billing.checkout import create_checkout
from gateway.errors import GatewayError
from gateway.money import format_usd
from gateway.portal.common import accounts, actor, failed, page, posted, signed_in
from gateway.records import BillingProfile, User
from gateway.web import services_of

PRESETS = ("10.00", "25.00", "50.00", "100.00")


async def _context(request: Request, user: User, **extra: Any) -> dict[str, Any]:
    services = services_of(request)
    billing = services.billing
    profile = await billing.ledger.payments.get_billing_profile(user.id) or BillingProfile(user.id)
    balance, reserved = await accounts(request).balance_of(user)
    return {
        "balance": balance,
        "reserved": reserved,
        "profile": profile,
        "configured": bool(billing.config.api_key and billing.config.webhook_secret),
        "min": format_usd(billing.config.min_amount),
        "max": format_usd(billing.config.max_amount),
        "presets": PRESETS,
        # Sent back with the form: a double submit of one page is one Checkout Session.
        "attempt": secrets.token_hex(8),
        "amount": "25.00",
        "topup": {
            "threshold": format_usd(profile.threshold) if profile.threshold else "5.00",
            "amount": format_usd(profile.amount) if profile.amount else "20.00",
        },
        **extra,
    }


async def billing_page(request: Request) -> Response:
    _, user = await signed_in(request)
    saved = "Auto top-up settings saved." if request.query_params.get("saved") else None
    return page(request, "billing.html", await _context(request, user, notice=saved))


async def checkout(request: Request) -> Response:
    _, user = await signed_in(request)
    form = await posted(request)
    billing = services_of(request).billing
    try:
        session = await create_checkout(
            billing,
            user,
            form.get("amount", ""),
            request_key=f"portal-{form.get('attempt', '')[:64]}" if form.get("attempt") else None,
        )
    except GatewayError as exc:
        context = await _context(request, user, amount=form.get("amount", ""))
        return failed(request, "billing.html", context, exc, fields={"amount": "amount"})
    return RedirectResponse(str(session["url"]), status_code=303)


async def auto_topup(request: Request) -> Response:
    _, user = await signed_in(request)
    form = await posted(request)
    billing = services_of(request).billing
    data = {
        "enabled": form.get("enabled") == "on",
        "threshold": form.get("threshold") or None,
        "amount": form.get("amount") or None,
    }
    try:
        await configure(
            billing, user.id, {k: v for k, v in data.items() if v is not None}, actor=actor(user)
        )
    except GatewayError as exc:
        topup = {"threshold": form.get("threshold", ""), "amount": form.get("amount", "")}
        context = await _context(request, user, topup=topup)
        fields = {"threshold": "threshold", "amount": "topup-amount"}
        return failed(request, "billing.html", context, exc, fields=fields)
    return RedirectResponse("/portal/billing?saved=1", status_code=303)


async def returned(request: Request) -> Response:
    """Where Stripe sends the user back: /portal/billing/success or /cancelled."""
    _, user = await signed_in(request)
    paid = request.url.path.endswith("/success")
    balance, reserved = await accounts(request).balance_of(user)
    return page(
        request,
        "billing_done.html",
        {"paid": paid, "balance": balance, "reserved": reserved},
    )


async def stripe_return(request: Request) -> Response:
    """The default checkout URLs (``$GATEWAY_PUBLIC_URL/billing/success`` and
    ``/billing/cancelled``) lead to the portal's pages."""
    target = "/portal" + request.url.path
    query = urlencode(dict(request.query_params))
    return RedirectResponse(f"{target}?{query}" if query else target, status_code=303)
