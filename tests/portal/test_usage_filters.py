"""The usage filters the portal's usage page, CSV and charts use, on every database: a page
narrowed by range, model and key; an export's pages narrowed the same way; one user's spend
per day. Another user's rows never appear, whatever key id is asked for."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from zoneinfo import ZoneInfo

from gateway import reports
from gateway.exports import export_lines, export_query
from gateway.ledger.reports import days_between
from gateway.report_records import Cursor, Period, UsageFilter
from tests.ledger.books import T0, USD, Books, Contract, usage

HOUR = timedelta(hours=1)


async def seed(books: Books) -> None:
    await books.user("alice", credit=10 * USD)
    await books.user("bob", credit=10 * USD)
    rows = [
        replace(usage("a1", "alice", 100, T0), key_id="ka", model="gpt-4o"),
        replace(usage("a2", "alice", 200, T0 + HOUR), key_id="kb", model="gpt-4o"),
        replace(usage("a3", "alice", 300, T0 + 2 * HOUR), key_id="ka", model="mini"),
        replace(usage("a4", "alice", 400, T0 + 25 * HOUR), key_id="ka", model="gpt-4o"),
        replace(usage("b1", "bob", 999, T0 + HOUR), key_id="kbob", model="gpt-4o"),
    ]
    await books.journal.write_usage(rows)


def test_usage_pages_are_narrowed_by_range_model_and_key(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        await seed(books)
        r = books.ledger.reports

        async def ids(
            only: UsageFilter | None, limit: int = 10, cursor: Cursor | None = None
        ) -> list[str]:
            rows, _ = await r.list_usage_before("alice", cursor=cursor, limit=limit, only=only)
            return [u.request_id for u in rows]

        assert await ids(None) == ["a4", "a3", "a2", "a1"]
        assert await ids(UsageFilter(model="gpt-4o")) == ["a4", "a2", "a1"]
        assert await ids(UsageFilter(key_id="ka")) == ["a4", "a3", "a1"]
        assert await ids(UsageFilter(model="gpt-4o", key_id="ka")) == ["a4", "a1"]
        day = Period(T0 - HOUR, T0 + 24 * HOUR)
        assert await ids(UsageFilter(period=day)) == ["a3", "a2", "a1"]
        assert await ids(UsageFilter(period=day, key_id="ka")) == ["a3", "a1"]
        # Bob's key asked for on Alice's page: nothing of Bob's.
        assert await ids(UsageFilter(key_id="kbob")) == []
        page, more = await r.list_usage_before(
            "alice", cursor=None, limit=1, only=UsageFilter(key_id="ka")
        )
        assert more
        last = Cursor(page[0].created_at, page[0].request_id)
        assert await ids(UsageFilter(key_id="ka"), cursor=last) == ["a3", "a1"]
        export = await r.usage_since(
            user_id="alice", period=Period(), after=None, limit=10, only=UsageFilter(key_id="ka")
        )
        assert [u.request_id for u in export] == ["a1", "a3", "a4"]

    contract.run(scenario)


def test_one_users_spend_per_day(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        await seed(books)
        days = days_between(T0.date(), T0.date() + timedelta(days=2), ZoneInfo("UTC"))
        total, rows = await books.ledger.reports.revenue_by_day(days, user_id="alice")
        assert [d.totals.cost for d in rows] == [600, 400, 0]
        assert total.cost == 1000
        everyone, _ = await books.ledger.reports.revenue_by_day(days)
        assert everyone.cost == 1999

    contract.run(scenario)


def test_the_usage_service_and_export_read_the_filters_from_parameters(
    contract: Contract,
) -> None:
    async def scenario(books: Books) -> None:
        await seed(books)
        ledger = books.ledger
        page = await reports.usage_page(ledger, "alice", {"model": "mini"})
        assert [u["request_id"] for u in page["data"]] == ["a3"]
        page = await reports.usage_page(
            ledger,
            "alice",
            {"from": T0.date().isoformat(), "to": T0.date().isoformat(), "key": "kb"},
        )
        assert [u["request_id"] for u in page["data"]] == ["a2"]
        query = export_query({"key": "ka", "format": "jsonl"}, user_id="alice")
        lines = b"".join([chunk async for chunk in export_lines(ledger, query)]).splitlines()
        assert [line.split(b'"request_id":"')[1][:2] for line in lines] == [b"a1", b"a3", b"a4"]
        spend = await reports.revenue(
            ledger,
            {"from": T0.date().isoformat(), "to": (T0 + 25 * HOUR).date().isoformat()},
            user_id="alice",
        )
        assert [d["revenue"] for d in spend["data"]] == ["0.0000004", "0.0000006"]

    contract.run(scenario)
