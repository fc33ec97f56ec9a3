"""The ledger's Payments (and the Journal's capped debit), one contract for SQLite and
PostgreSQL, driven through the same webhook code the gateway runs (``process``), including
racing deliveries."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import orjson
import pytest

from gateway.billing import Billing, BillingConfig
from gateway.billing.stripe_webhook import process
from gateway.ledger import open_ledger
from gateway.ledger.base import UnknownUser
from gateway.metering.store import MemoryStore
from gateway.records import StripeEvent
from gateway.settings import Settings
from tests.billing.helpers import event, session
from tests.support.fixtures import Database
from tests.support.gateway import usd

Body = Callable[[Billing], Awaitable[None]]


@pytest.fixture
def run(database: Database) -> Iterator[Callable[[Body], None]]:
    url = database.url

    def runner(body: Body) -> None:
        async def main() -> None:
            ledger = await open_ledger(url)
            try:
                store = MemoryStore(ledger.journal.balance)
                config = BillingConfig.from_settings(Settings(stripe_webhook_secret="whsec_x"))
                await body(Billing(config=config, ledger=ledger, store=store))
            finally:
                await ledger.close()

        asyncio.run(main())

    yield runner


async def balance(billing: Billing, user_id: str) -> int:
    found = await billing.ledger.journal.balance(user_id)
    assert found is not None
    return found[0]


async def deliver(billing: Billing, evt: dict[str, Any]) -> StripeEvent:
    outcome, _ = await process(billing, evt, orjson.dumps(evt).decode())
    return outcome


def test_racing_deliveries_and_event_types_credit_a_session_once(run: Any) -> None:
    async def body(b: Billing) -> None:
        await b.ledger.directory.create_user(user_id="u1", email=None)
        evt = event("evt_1", "checkout.session.completed", session("u1", intent="pi_1"))
        other = event(
            "evt_2", "checkout.session.async_payment_succeeded", session("u1", intent="pi_1")
        )
        outcomes = await asyncio.gather(
            *[deliver(b, evt) for _ in range(10)], *[deliver(b, other) for _ in range(3)]
        )
        assert {o.status for o in outcomes} == {"credited"}
        entries = await b.ledger.journal.list_entries("u1")
        assert [(e.kind, e.amount, e.reference) for e in entries] == [
            ("topup", usd("10.00"), "stripe:cs_test_1")
        ]
        assert await balance(b, "u1") == usd("10.00")
        assert await b.ledger.payments.find_stripe_credit("pi_1") == ("u1", usd("10.00"))
        rows, more = await b.ledger.payments.list_stripe_events(
            status="credited", limit=10, offset=0
        )
        assert sorted(r.event_id for r in rows) == ["evt_1", "evt_2"] and not more

    run(body)


def test_unmatched_event_is_worked_again_once_the_user_exists(run: Any) -> None:
    async def body(b: Billing) -> None:
        evt = event("evt_u", "checkout.session.completed", session("later"))
        assert (await deliver(b, evt)).status == "unmatched"
        rows, _ = await b.ledger.payments.list_stripe_events(status="unmatched", limit=10, offset=0)
        assert [(r.event_id, r.user_id, r.amount) for r in rows] == [
            ("evt_u", "later", usd("10.00"))
        ]
        await b.ledger.directory.create_user(user_id="later", email=None)
        assert (await deliver(b, evt)).status == "credited"
        assert await balance(b, "later") == usd("10.00")

    run(body)


def test_racing_refund_levels_debit_the_highest_level_once(run: Any) -> None:
    async def body(b: Billing) -> None:
        await b.ledger.directory.create_user(user_id="u2", email=None)
        await deliver(
            b,
            event(
                "evt_p", "checkout.session.completed", session("u2", subtotal=2000, intent="pi_2")
            ),
        )

        def refund(eid: str, refunded: int) -> dict[str, Any]:
            return event(
                eid,
                "charge.refunded",
                {
                    "id": "ch_2",
                    "payment_intent": "pi_2",
                    "amount": 2000,
                    "amount_refunded": refunded,
                    "currency": "usd",
                },
            )

        await asyncio.gather(
            deliver(b, refund("evt_r1", 500)),
            deliver(b, refund("evt_r2", 1500)),
            deliver(b, refund("evt_r1", 500)),
            deliver(b, refund("evt_r2", 1500)),
        )
        refunds = [
            e.amount for e in await b.ledger.journal.list_entries("u2") if e.kind == "refund"
        ]
        assert sum(refunds) == -usd("15.00")
        assert await balance(b, "u2") == usd("5.00")

    run(body)


def test_only_one_auto_topup_claim_at_a_time(run: Any) -> None:
    async def body(b: Billing) -> None:
        await b.ledger.directory.create_user(user_id="u3", email=None)
        payments = b.ledger.payments
        with pytest.raises(UnknownUser):
            await payments.save_auto_topup("nobody", enabled=True, threshold=1, amount=1)
        with pytest.raises(UnknownUser):
            await payments.set_stripe_customer("nobody", "cus_x")
        assert await payments.set_stripe_customer("u3", "cus_a") == "cus_a"
        assert await payments.set_stripe_customer("u3", "cus_b") == "cus_a"  # first one stays
        await payments.save_auto_topup("u3", enabled=True, threshold=usd("5"), amount=usd("20"))
        claims = await asyncio.gather(
            *[payments.claim_auto_topup("u3", stale_after=600) for _ in range(8)]
        )
        [claim] = [c for c in claims if c is not None]
        assert (claim.seq, claim.amount, claim.stripe_customer_id) == (1, usd("20"), "cus_a")
        # A stale unanswered claim is re-driven under the same seq (same idempotency key).
        again = await payments.claim_auto_topup("u3", stale_after=0)
        assert again is not None and again.seq == 1
        await payments.set_topup_intent("u3", seq=1, intent_id="pi_t")
        assert await payments.claim_auto_topup("u3", stale_after=0) is None  # real intent waits
        await payments.finish_auto_topup("u3", intent_id="pi_t", seq=1, failure=None)
        nxt = await payments.claim_auto_topup("u3", stale_after=600)
        assert nxt is not None and nxt.seq == 2
        await payments.finish_auto_topup("u3", intent_id=None, seq=2, failure="declined")
        profile = await payments.get_billing_profile("u3")
        assert profile is not None
        assert (profile.auto_topup_enabled, profile.in_flight_intent, profile.last_error) == (
            False,
            None,
            "declined",
        )
        assert await payments.claim_auto_topup("u3", stale_after=600) is None

    run(body)


def test_debit_up_to_never_takes_a_payment_below_zero(run: Any) -> None:
    async def body(b: Billing) -> None:
        await b.ledger.directory.create_user(user_id="u4", email=None)
        await b.ledger.journal.post_entry("u4", kind="topup", amount=usd("3"), reference="t:1")
        entry = await b.ledger.journal.debit_up_to(
            "u4", kind="refund", amount=usd("5"), reference="r:1", reason=None, actor=None
        )
        assert (entry.amount, entry.balance_after) == (-usd("3"), 0)
        replay = await b.ledger.journal.debit_up_to(
            "u4", kind="refund", amount=usd("5"), reference="r:1", reason=None, actor=None
        )
        assert not replay.created and replay.id == entry.id

    run(body)
