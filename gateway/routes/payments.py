"""Payment routes: thin translation between HTTP and the billing services.

POST /webhooks/stripe                 Stripe's signed events (no gateway key)
POST /me/checkout        {amount}     a Checkout Session URL (gateway key)
GET|PUT /me/auto-topup   {enabled, threshold, amount}
PUT /admin/users/{id}/auto-topup      the same, for an operator
GET /admin/billing/events?status=     received events (e.g. unmatched), newest first
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.auth import check_admin
from gateway.billing import Billing
from gateway.billing.autotopup import configure
from gateway.billing.checkout import create_checkout
from gateway.billing.stripe_webhook import MAX_PAYLOAD, process, verify
from gateway.errors import BadRequest, NotFound, PayloadTooLarge
from gateway.records import BillingProfile, User
from gateway.views import event_view, profile_view, webhook_answer
from gateway.web import json_response, page, read_json, services_of

ADMIN = "admin"


def payment_routes() -> list[Route]:
    return [
        Route("/webhooks/stripe", webhook, methods=["POST"]),
        Route("/me/checkout", checkout, methods=["POST"]),
        Route("/me/auto-topup", my_auto_topup, methods=["GET", "PUT"]),
        Route("/admin/users/{user_id}/auto-topup", admin_auto_topup, methods=["PUT"]),
        Route("/admin/billing/events", admin_events, methods=["GET"]),
    ]


async def _caller(request: Request) -> tuple[Billing, User]:
    services = services_of(request)
    key = await services.auth.authenticate(request.headers.get("authorization"))
    user = await services.ledger.directory.get_user(key.user_id)
    if user is None:
        raise NotFound(f"no user {key.user_id!r}", code="user_not_found")
    return services.billing, user


async def _admin(request: Request) -> Billing:
    services = services_of(request)
    await check_admin(
        services.settings.admin_key, request.headers.get("authorization"), services.auth
    )
    return services.billing


async def webhook(request: Request) -> Response:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_PAYLOAD:
        raise PayloadTooLarge("a Stripe event is never this large")
    billing = services_of(request).billing
    payload = await request.body()
    event = verify(payload, request.headers.get("stripe-signature"), billing.config)
    outcome, duplicate = await process(billing, event, payload.decode())
    return json_response(webhook_answer(outcome, duplicate))


async def checkout(request: Request) -> Response:
    billing, user = await _caller(request)
    data = await read_json(request)
    session = await create_checkout(
        billing, user, data.get("amount"), request_key=request.headers.get("idempotency-key")
    )
    return json_response(session, 201)


async def my_auto_topup(request: Request) -> Response:
    billing, user = await _caller(request)
    if request.method == "GET":
        profile = await billing.ledger.payments.get_billing_profile(user.id)
        return json_response(profile_view(profile or BillingProfile(user.id)))
    profile = await configure(billing, user.id, await read_json(request), actor=user.id)
    return json_response(profile_view(profile))


async def admin_auto_topup(request: Request) -> Response:
    billing = await _admin(request)
    profile = await configure(
        billing, request.path_params["user_id"], await read_json(request), actor=ADMIN
    )
    return json_response(profile_view(profile))


async def admin_events(request: Request) -> Response:
    billing = await _admin(request)
    limit, offset = page(request)
    status = request.query_params.get("status") or None
    if status is not None and not status.replace("_", "").isalpha():
        raise BadRequest("status must be a word such as unmatched", param="status")
    rows, more = await billing.ledger.payments.list_stripe_events(
        status=status, limit=limit, offset=offset
    )
    return json_response({"data": [event_view(e) for e in rows], "has_more": more})
