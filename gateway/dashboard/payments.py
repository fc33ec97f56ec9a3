"""/dashboard/payments: the Stripe events that need the operator, each with what to do, and
the replay of those a replay can settle.

A customer who paid and got no credit shows here whatever the reason: ``unmatched`` (no user
for the payment), ``error`` (a failure while applying it), ``foreign_currency`` (paid in a
currency the gateway does not credit) and an event stuck in ``processing`` (a delivery that
stopped midway). So does a ``refund_shortfall``: Stripe refunded more than the balance still
held. A replay runs the stored event through ``stripe_webhook.process``, the code a delivery
and ``gateway stripe replay`` run, so it credits at most once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from starlette.requests import Request
from starlette.responses import Response

from gateway.billing.stripe_webhook import parse_event, process
from gateway.dashboard.common import page
from gateway.errors import GatewayError
from gateway.pages.forms import read_form
from gateway.pages.sessions import check_csrf, require_operator
from gateway.records import StripeEvent, utcnow
from gateway.views import event_view
from gateway.web import services_of

EVENTS_PAGE = 50
# A delivery works an event in well under a second; one still "processing" after this long
# stopped midway (a crash, a restart) and waits for Stripe's next retry, or a replay.
STUCK_AFTER = timedelta(minutes=10)


@dataclass(frozen=True)
class Kind:
    status: str
    title: str
    todo: str
    replay: bool


KINDS = (
    Kind(
        "unmatched",
        "Paid, no user to credit",
        "The payment names no user the gateway knows (e.g. the user was created after paying, "
        "or the id was mistyped in the checkout). Create the user with the id shown, then "
        "Replay: the payment is credited once.",
        True,
    ),
    Kind(
        "foreign_currency",
        "Paid in another currency, not credited",
        "The customer paid in a currency the gateway does not credit (only the configured one "
        "is). Either refund the payment in Stripe, or open the user and Add credit for the "
        "amount in USD, naming the event in the reason. A replay would not credit it.",
        False,
    ),
    Kind(
        "error",
        "Failed while applying",
        "Applying the event failed (the detail says why, e.g. the database was down). Stripe "
        "retries for three days; once the cause is fixed, Replay applies it now.",
        True,
    ),
    Kind(
        "processing",
        "Stuck while processing",
        "A delivery stopped midway (a crash or restart) more than 10 minutes ago. Replay "
        "finishes it; money moves at most once.",
        True,
    ),
    Kind(
        "refund_shortfall",
        "Refunded beyond the balance",
        "Stripe refunded more than the user's balance still held (the credit was spent): the "
        "difference in the detail could not be taken back. Recover it from the customer or "
        "write it off; nothing to replay.",
        False,
    ),
)
REPLAYABLE = {k.status for k in KINDS if k.replay}


def _stuck(event: StripeEvent) -> bool:
    since = event.updated_at or event.created_at
    return since is not None and utcnow() - since > STUCK_AFTER


def _needs_attention(event: StripeEvent) -> bool:
    return event.status != "processing" or _stuck(event)


async def _events(request: Request, status: str) -> list[StripeEvent]:
    rows, _ = await services_of(request).ledger.payments.list_stripe_events(
        status=status, limit=EVENTS_PAGE, offset=0
    )
    return [e for e in rows if _needs_attention(e)]


async def payments(
    request: Request, *, error: str | None = None, notice: str | None = None, status: int = 200
) -> Response:
    await require_operator(request)
    sections = [
        (kind, [event_view(e) for e in await _events(request, kind.status)]) for kind in KINDS
    ]
    return page(
        request,
        "payments.html",
        {"sections": sections, "error": error, "notice": notice},
        status=status,
    )


async def replay(request: Request) -> Response:
    await require_operator(request)
    form = await read_form(request)
    await check_csrf(request, form)
    event_id = request.path_params["event_id"]
    stored = await services_of(request).ledger.payments.get_stripe_event(event_id)
    if stored is None or stored.status not in REPLAYABLE or not _needs_attention(stored):
        return await payments(
            request, error=f"No unmatched, failed or stuck event {event_id}.", status=404
        )
    try:
        outcome, _ = await process(
            services_of(request).billing, parse_event(stored.payload.encode()), stored.payload
        )
    except GatewayError as exc:
        return await payments(request, error=exc.message, status=exc.status)
    view = event_view(outcome)
    detail = f" ({view['detail']})" if view["detail"] else ""
    return await payments(request, notice=f"Event {event_id} replayed: {view['status']}{detail}.")
