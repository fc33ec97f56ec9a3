"""The alert outbox (the ``Webhooks`` port) on SQLite and PostgreSQL: stored once per
occurrence and endpoint, claimed by one sender at a time, reclaimed after a lease, finished
only under the claim, paged newest first; alerts written with a payment outcome commit with
it."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from gateway.alerts import events
from gateway.alerts.outbox import Alerts
from gateway.ledger import open_ledger
from gateway.records import StripeEvent, utcnow
from tests.ledger.books import Books, Contract

URLS = ("http://hooks.example/a?token=s3cret", "https://ops.example/b")


def low(request_id: str, user_id: str = "alice") -> events.AlertEvent:
    return events.balance_low(
        user_id=user_id, level="warning", balance=5, threshold=10, request_id=request_id
    )


def test_an_occurrence_is_stored_once_per_endpoint_with_its_first_event_id(
    contract: Contract,
) -> None:
    async def scenario(books: Books) -> None:
        hooks = books.ledger.webhooks
        alerts = Alerts(URLS, hooks)
        first, again = alerts.address(low("r1")), alerts.address(low("r1"))
        assert first[0].event_id != again[0].event_id
        await hooks.enqueue(first)
        await hooks.enqueue(again)
        await hooks.enqueue(alerts.address(low("r2")))
        rows, more = await hooks.list_deliveries(status=None, type=None, before=None, limit=10)
        assert not more
        assert sorted((r.dedup_key, r.endpoint) for r in rows) == [
            ("balance.low:alice:warning:r1", "http://hooks.example/a"),
            ("balance.low:alice:warning:r1", "https://ops.example/b"),
            ("balance.low:alice:warning:r2", "http://hooks.example/a"),
            ("balance.low:alice:warning:r2", "https://ops.example/b"),
        ]
        assert {r.event_id for r in rows if r.dedup_key.endswith("r1")} == {first[0].event_id}
        # The token in the first URL is stored nowhere.
        assert all("s3cret" not in r.endpoint + r.payload for r in rows)
        assert all((r.status, r.attempts, r.claim) == ("pending", 0, None) for r in rows)

    contract.run(scenario)


def test_a_due_row_is_claimed_once_and_finished_only_under_its_claim(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        hooks = books.ledger.webhooks
        await hooks.enqueue(Alerts(URLS[:1], hooks).address(low("r1")))
        [row] = await hooks.claim_due(limit=10, lease=60)
        assert row.claim
        assert row.next_attempt_at > utcnow() + timedelta(seconds=50)
        assert await hooks.claim_due(limit=10, lease=60) == []
        assert not await hooks.finish_delivery(
            row.id, claim="not-mine", status="delivered", next_attempt_at=utcnow(),
            http_status=200, error=None,
        )  # fmt: skip
        later = utcnow() + timedelta(hours=1)
        assert await hooks.finish_delivery(
            row.id, claim=row.claim, status="pending", next_attempt_at=later,
            http_status=500, error="HTTP 500",
        )  # fmt: skip
        assert await hooks.claim_due(limit=10, lease=60) == []  # not due before `later`
        [back] = (await hooks.list_deliveries(status="pending", type=None, before=None, limit=5))[0]
        assert (back.attempts, back.last_status, back.last_error, back.claim) == (
            1, 500, "HTTP 500", None,
        )  # fmt: skip
        # A second finish under the spent claim changes nothing.
        assert not await hooks.finish_delivery(
            row.id, claim=row.claim, status="delivered", next_attempt_at=utcnow(),
            http_status=200, error=None,
        )  # fmt: skip

    contract.run(scenario)


def test_a_lease_that_ran_out_lets_another_sender_take_the_row(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        hooks = books.ledger.webhooks
        await hooks.enqueue(Alerts(URLS[:1], hooks).address(low("r1")))
        [crashed] = await hooks.claim_due(limit=10, lease=0)  # a sender that died at once
        [taken] = await hooks.claim_due(limit=10, lease=60)
        assert taken.id == crashed.id
        assert taken.claim != crashed.claim
        assert not await hooks.finish_delivery(
            crashed.id, claim=str(crashed.claim), status="failed", next_attempt_at=utcnow(),
            http_status=None, error="late",
        )  # fmt: skip
        assert await hooks.finish_delivery(
            taken.id, claim=str(taken.claim), status="delivered", next_attempt_at=utcnow(),
            http_status=204, error=None,
        )  # fmt: skip
        [done] = (await hooks.list_deliveries(status="delivered", type=None, before=None, limit=5))[
            0
        ]
        assert done.delivered_at is not None
        assert done.attempts == 1
        assert await hooks.claim_due(limit=10, lease=60) == []

    contract.run(scenario)


def test_senders_claiming_at_once_never_share_a_row(contract: Contract) -> None:
    async def main() -> None:
        ledgers = [await open_ledger(contract.url) for _ in range(4)]
        try:
            hooks = ledgers[0].webhooks
            alerts = Alerts(URLS[:1], hooks)
            await hooks.enqueue([a for i in range(30) for a in alerts.address(low(f"r{i}"))])
            for _ in range(3):
                claims = await asyncio.gather(
                    *(lg.webhooks.claim_due(limit=7, lease=60) for lg in ledgers)
                )
                ids = [d.id for batch in claims for d in batch]
                assert len(ids) == len(set(ids))
            rows, _ = await hooks.list_deliveries(status=None, type=None, before=None, limit=50)
            assert sum(r.claim is not None for r in rows) == min(30, 3 * 4 * 7)
        finally:
            for lg in ledgers:
                await lg.close()

    asyncio.run(main())


def test_deliveries_page_newest_first_with_filters_and_a_cursor(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        hooks = books.ledger.webhooks
        alerts = Alerts(URLS[:1], hooks)
        for i in range(5):
            await hooks.enqueue(alerts.address(low(f"r{i}")))
        await alerts.record(
            events.refund_shortfall(
                user_id="alice", charge="ch_1", owed=10, debited=4, reference="stripe-refund:x"
            )
        )
        page, more = await hooks.list_deliveries(status=None, type=None, before=None, limit=4)
        assert more
        assert page[0].type == "refund.shortfall"
        assert [r.id for r in page] == sorted((r.id for r in page), reverse=True)
        rest, more = await hooks.list_deliveries(
            status=None, type=None, before=page[-1].id, limit=4
        )
        assert not more
        assert len(page) + len(rest) == 6
        assert {r.id for r in page}.isdisjoint(r.id for r in rest)
        low_rows, _ = await hooks.list_deliveries(
            status="pending", type="balance.low", before=None, limit=10
        )
        assert len(low_rows) == 5
        assert (await hooks.list_deliveries(status="failed", type=None, before=None, limit=10)) == (
            [],
            False,
        )

    contract.run(scenario)


def test_alerts_commit_with_the_payment_outcome_that_raised_them(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        await books.user("alice")
        payments, hooks = books.ledger.payments, books.ledger.webhooks
        alerts = Alerts(URLS, hooks)
        event = StripeEvent(event_id="evt_s1", type="charge.refunded", status="processing",
                            payload="{}")  # fmt: skip
        assert await payments.claim_stripe_event(event) is None
        shortfall = events.refund_shortfall(
            user_id="alice", charge="ch_1", owed=10, debited=4, reference="stripe-refund:ch_1:10"
        )
        outcome = StripeEvent(event_id="evt_s1", type="charge.refunded",
                              status="refund_shortfall", payload="{}")  # fmt: skip
        await payments.finish_stripe_event(outcome, alerts=alerts.address(shortfall))
        # A redelivery raising the same shortfall again stores nothing new.
        await payments.finish_stripe_event(outcome, alerts=alerts.address(shortfall))
        await payments.save_auto_topup("alice", enabled=True, threshold=5, amount=10)
        failed = events.auto_topup_failed(
            user_id="alice", reason="card declined", payment_intent="pi_1", trigger=3
        )
        await payments.finish_auto_topup(
            "alice", intent_id="pi_1", seq=3, failure="card declined",
            alerts=alerts.address(failed),
        )  # fmt: skip
        profile = await payments.get_billing_profile("alice")
        assert profile is not None
        assert not profile.auto_topup_enabled
        rows, _ = await hooks.list_deliveries(status=None, type=None, before=None, limit=10)
        assert sorted(r.type for r in rows) == ["auto_topup.failed"] * 2 + ["refund.shortfall"] * 2

    contract.run(scenario)
