"""Billing fixtures: a real gateway with payments mounted, on SQLite and on PostgreSQL, and
Stripe's API mocked with respx."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import respx

from tests.billing.helpers import STRIPE_KEY, WEBHOOK_SECRET
from tests.support.gateway import GatewayFactory, RunningGateway


@pytest.fixture
def stripe_api() -> Iterator[respx.MockRouter]:
    """Mocks api.stripe.com only; calls to the gateway on loopback go through for real."""
    with respx.mock(assert_all_called=False) as mock:
        mock.route(host="127.0.0.1").pass_through()
        yield mock


@pytest.fixture
def bgw(
    gateways: GatewayFactory, stripe_api: respx.MockRouter, database_url: str
) -> Iterator[RunningGateway]:
    """An embedded-mode gateway with payments, on each ledger database (SQLite, PostgreSQL)."""
    gw = gateways.start(
        GATEWAY_DATABASE_URL=database_url,
        STRIPE_API_KEY=STRIPE_KEY,
        STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
        GATEWAY_CHECKOUT_MIN="1.00",
        GATEWAY_CHECKOUT_MAX="500.00",
    )
    yield gw
    # Stopped here, not only by ``gateways``: this teardown runs before the database's, so the
    # gateway's last flush still finds its PostgreSQL database.
    gw.stop()
