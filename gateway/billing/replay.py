"""``gateway stripe replay <event.json>``: re-drive a saved Stripe event, through a running
gateway (signed afresh with STRIPE_WEBHOOK_SECRET) or ``--direct`` on the database. The event
is processed by the same code as a delivery (``stripe_webhook.process``), so a replay is as
idempotent as a redelivery."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

import orjson

from gateway.billing import Billing, BillingConfig
from gateway.billing.stripe_webhook import parse_event, process
from gateway.errors import BadRequest, Unavailable
from gateway.settings import Settings
from gateway.views import webhook_answer


def add_cli(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds ``stripe replay`` to the ``gateway`` command line."""
    stripe_cmd = sub.add_parser("stripe", help="Stripe payments tools")
    commands = stripe_cmd.add_subparsers(dest="stripe_command", required=True)
    p = commands.add_parser("replay", help="re-drive a saved Stripe event (JSON file)")
    p.add_argument("event", help="the event as Stripe sent it (dashboard or `stripe events`)")
    p.add_argument(
        "--direct",
        action="store_true",
        help="apply it to the database (and Redis) directly, not via the gateway",
    )
    p.add_argument(
        "--url",
        default=None,
        help="gateway base URL (default $GATEWAY_URL or http://127.0.0.1:8080)",
    )
    p.set_defaults(run=run_replay)


def run_replay(args: argparse.Namespace, settings: Settings) -> None:

    payload = Path(args.event).read_bytes()
    try:
        parse_event(payload)
        if args.direct:
            result = asyncio.run(replay_direct(settings, payload))
        else:
            url = args.url or settings.gateway_url
            result = asyncio.run(replay_http(settings, payload, url=url))
    except (BadRequest, Unavailable, RuntimeError) as exc:
        sys.exit(f"gateway: {getattr(exc, 'message', exc)}")
    sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")


async def replay_http(settings: Settings, payload: bytes, *, url: str) -> dict[str, Any]:
    """Signs the event afresh with STRIPE_WEBHOOK_SECRET and posts it to a running gateway,
    so an embedded gateway's in-process balances see the credit at once."""
    import httpx
    import stripe

    if not settings.stripe_webhook_secret:
        raise RuntimeError("STRIPE_WEBHOOK_SECRET is needed to sign the replay (or --direct)")
    header = stripe.WebhookSignature.generate_signature_header(
        payload.decode(), settings.stripe_webhook_secret
    )
    async with httpx.AsyncClient(base_url=url.rstrip("/"), timeout=30) as client:
        try:
            response = await client.post(
                "/webhooks/stripe",
                content=payload,
                headers={"Stripe-Signature": header, "Content-Type": "application/json"},
            )
        except httpx.HTTPError as exc:
            raise RuntimeError(f"cannot reach the gateway at {url}: {exc}") from exc
    if response.status_code >= 400:
        raise RuntimeError(f"the gateway answered {response.status_code}: {response.text}")
    data: dict[str, Any] = response.json()
    return data


async def replay_direct(settings: Settings, payload: bytes) -> dict[str, Any]:
    """Applies the event with the database's own services (the gateway may be down)."""
    from gateway.ledger import open_ledger
    from gateway.metering.modes import open_metering
    from gateway.metrics import Metrics

    ledger = await open_ledger(settings.database_url)
    try:
        store = (await open_metering(settings, ledger, Metrics())).store
        try:
            billing = Billing(
                config=BillingConfig.from_settings(settings), ledger=ledger, store=store
            )
            outcome, duplicate = await process(billing, parse_event(payload), payload.decode())
            return webhook_answer(outcome, duplicate)
        finally:
            await store.close()
    finally:
        await ledger.close()
