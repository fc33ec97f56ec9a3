"""The Journal's usage debits (write_usage), on every database (tests/ledger/books.py)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from gateway.ledger.base import InsufficientFunds, UnknownUser
from tests.ledger.books import T0, USD, Books, Contract, aware_utc, contended, usage


def test_replayed_usage_batch_debits_once(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        await books.user("alice", credit=USD)
        batch = [
            usage(f"r{i}", "alice", 1000 * (i + 1), T0 + timedelta(seconds=i)) for i in range(3)
        ]
        assert await books.journal.write_usage(batch) == ["r0", "r1", "r2"]
        assert await books.journal.write_usage(batch) == []
        assert await books.balance("alice") == USD - 6000
        rows, _ = await books.ledger.reports.list_usage("alice", limit=10, offset=0)
        assert len(rows) == 3

    contract.run(scenario)


def test_overlapping_usage_batch_debits_only_new_records(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        await books.user("alice", credit=USD)
        await books.user("bob", credit=USD)
        await books.journal.write_usage([usage("r1", "alice", 100), usage("r2", "bob", 200)])
        later = T0 + timedelta(seconds=1)
        # r1 comes back with another cost: the first record stands, nothing is re-priced.
        second = [
            usage("r1", "alice", 999),
            usage("r3", "alice", 300, later),
            usage("r2", "bob", 999),
            usage("r4", "bob", 400, later),
        ]
        assert await books.journal.write_usage(second) == ["r3", "r4"]
        assert await books.balance("alice") == USD - 400
        assert await books.balance("bob") == USD - 600
        refs = [e.reference for e in await books.journal.list_entries("alice")]
        assert refs == ["grant:alice", "usage:r1", "usage:r3"]

    contract.run(scenario)


def test_duplicate_request_id_within_one_batch_is_recorded_once(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        await books.user("alice", credit=USD)
        batch = [usage("r1", "alice", 100), usage("r1", "alice", 5000)]
        assert await books.journal.write_usage(batch) == ["r1"]
        assert await books.balance("alice") == USD - 100

    contract.run(scenario)


def test_usage_batch_entries_carry_running_balance_and_version(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        await books.user("alice", credit=10_000)
        await books.user("bob", credit=500)
        batch = [
            usage("a1", "alice", 1000, T0),
            usage("b1", "bob", 100, T0),
            usage("a2", "alice", 2000, T0 + timedelta(seconds=1)),
            usage("a3", "alice", 3000, T0 + timedelta(seconds=2)),
            usage("b2", "bob", 200, T0 + timedelta(seconds=3)),
        ]
        await books.journal.write_usage(batch)
        alice = [
            (e.reference, e.kind, e.amount, e.balance_after, e.version)
            for e in await books.journal.list_entries("alice")
        ][1:]
        assert alice == [
            ("usage:a1", "usage", -1000, 9000, 2),
            ("usage:a2", "usage", -2000, 7000, 3),
            ("usage:a3", "usage", -3000, 4000, 4),
        ]
        bob = [(e.balance_after, e.version) for e in await books.journal.list_entries("bob")]
        assert bob == [(500, 1), (400, 2), (200, 3)]
        assert await books.journal.balance("alice") == (4000, 4)

    contract.run(scenario)


def test_zero_cost_usage_is_recorded_without_ledger_entry(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        await books.user("alice", credit=USD)
        before = await books.journal.balance("alice")
        assert await books.journal.write_usage([usage("free", "alice", 0)]) == ["free"]
        rows, _ = await books.ledger.reports.list_usage("alice", limit=10, offset=0)
        assert [(r.request_id, r.cost) for r in rows] == [("free", 0)]
        assert await books.journal.balance("alice") == before
        assert [e.reference for e in await books.journal.list_entries("alice")] == ["grant:alice"]

    contract.run(scenario)


def test_usage_beyond_the_balance_is_still_billed(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        await books.user("alice", credit=100)
        assert await books.journal.write_usage([usage("r1", "alice", 250)]) == ["r1"]
        assert await books.balance("alice") == -150
        # Negative usage entries may go below zero too; operator entries may not.
        await books.journal.post_entry("alice", kind="usage", amount=-50, reference="u:x")
        with pytest.raises(InsufficientFunds):
            await books.journal.post_entry("alice", kind="refund", amount=-1, reference="rf")
        assert await books.balance("alice") == -200

    contract.run(scenario)


def test_usage_for_unknown_user_is_refused_whole(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        await books.user("alice", credit=USD)
        with pytest.raises(UnknownUser):
            await books.journal.write_usage([usage("r1", "alice", 100), usage("r2", "ghost", 1)])
        assert await books.ledger.reports.list_usage("alice", limit=10, offset=0) == ([], False)
        assert await books.balance("alice") == USD

    contract.run(scenario)


def test_usage_record_round_trips_every_field(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        await books.user("alice", credit=USD)
        record = replace(
            usage("r1", "alice", 12_345),
            key_id=None,
            cached_tokens=7,
            reasoning_tokens=11,
            price_cached_input=1_250_000_000,
            status="client_disconnected",
            usage_source="counted",
        )
        await books.journal.write_usage([record])
        rows, has_more = await books.ledger.reports.list_usage("alice", limit=1, offset=0)
        assert rows == [record]
        assert not has_more
        assert aware_utc(rows[0].created_at)

    contract.run(scenario)


def test_usage_pages_newest_first_without_gaps_or_repeats(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        await books.user("alice", credit=USD)
        await books.user("bob", credit=USD)
        records = [usage(f"r{i:02}", "alice", 10, T0 + timedelta(seconds=i)) for i in range(25)]
        await books.journal.write_usage(records[::2])
        await books.journal.write_usage([usage("other", "bob", 10, T0), *records[1::2]])
        pages: list[list[str]] = []
        has_more = True
        while has_more:
            rows, has_more = await books.ledger.reports.list_usage(
                "alice", limit=7, offset=7 * len(pages)
            )
            pages.append([r.request_id for r in rows])
        assert [len(p) for p in pages] == [7, 7, 7, 4]
        assert [rid for page in pages for rid in page] == [f"r{i:02}" for i in reversed(range(25))]

    contract.run(scenario)


def test_concurrent_overlapping_usage_batches_debit_exactly_once(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        await books.user("alice", credit=USD)
        records = [
            usage(f"r{i}", "alice", 100 * (i + 1), T0 + timedelta(seconds=i)) for i in range(9)
        ]
        first, second = await contended(
            books.ledger,
            ["alice"],
            [
                books.journal.write_usage(records[:6]),
                books.journal.write_usage(records[3:]),
            ],
        )
        assert not set(first) & set(second)
        assert sorted(first + second) == [r.request_id for r in records]
        assert await books.balance("alice") == USD - sum(r.cost for r in records)
        assert len(await books.journal.list_entries("alice")) == 1 + len(records)

    contract.run(scenario)


def test_concurrent_batches_over_several_shared_users_all_land(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        for name in ("u1", "u2", "u3"):
            await books.user(name, credit=USD)
        forward = [usage(f"f{i}", f"u{i}", 10) for i in (1, 2, 3)]
        backward = [usage(f"b{i}", f"u{i}", 20) for i in (3, 2, 1)]
        done = await contended(
            books.ledger,
            ["u1", "u2", "u3"],
            [
                books.journal.write_usage(forward),
                books.journal.write_usage(backward),
            ],
        )
        assert sorted(map(len, done)) == [3, 3]
        for name in ("u1", "u2", "u3"):
            assert await books.balance(name) == USD - 30

    contract.run(scenario)


def test_every_token_class_price_and_overdraft_is_kept_as_written(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        await books.user("alice", credit=1000)
        record = replace(
            usage("r1", "alice", 1500),
            cache_write_tokens=40,
            cache_write_1h_tokens=10,
            prompt_audio_tokens=7,
            output_audio_tokens=3,
            price_cache_write=3_750_000_000,
            price_cache_write_1h=6_000_000_000,
            price_audio_input=40_000_000_000,
            price_audio_output=None,
            overdraft=500,
        )
        assert await books.journal.write_usage([record]) == ["r1"]
        rows, _ = await books.ledger.reports.list_usage("alice", limit=10, offset=0)
        assert [replace(r, created_at=record.created_at) for r in rows] == [record]
        # A call that cost more than it reserved is billed whole: the balance goes below zero.
        assert await books.balance("alice") == -500

    contract.run(scenario)


def test_the_deployment_that_served_is_kept_and_older_records_have_none(
    contract: Contract,
) -> None:
    async def scenario(books: Books) -> None:
        await books.user("alice", credit=USD)
        served = replace(usage("r1", "alice", 100), provider="azure", deployment="azure/gpt-4o")
        older = usage("r2", "alice", 200, T0 + timedelta(seconds=1))  # recorded before routing
        assert await books.journal.write_usage([served, older]) == ["r1", "r2"]
        rows, _ = await books.ledger.reports.list_usage("alice", limit=10, offset=0)
        assert [(r.request_id, r.provider, r.deployment) for r in rows] == [
            ("r2", "openai", None),
            ("r1", "azure", "azure/gpt-4o"),
        ]
        assert [replace(r, created_at=T0) for r in rows[1:]] == [served]
        assert await books.balance("alice") == USD - 300

    contract.run(scenario)
