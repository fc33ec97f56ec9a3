"""The Ledger contract (gateway/ledger/base.py), run against every implementation.

Each test runs on SQLite (a file in tmp_path) and on PostgreSQL (a fresh database on the
private server of tests/support). Every scenario ends with ``assert_books_balance``: for each
user it created, balance == sum of entries, and each entry's balance_after is the running sum.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from gateway.ledger.base import (
    DuplicateUser,
    InsufficientFunds,
    Ledger,
    ReferenceConflict,
    UnknownUser,
)
from gateway.ledger.postgres import PostgresLedger
from gateway.ledger.schema import migrations
from gateway.records import AuditEvent, UsageRecord, User
from tests.support.fixtures import Database

T0 = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
USD = 1_000_000_000


class Books:
    """The ledger under test and the users a scenario created (for the invariant check)."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.user_ids: list[str] = []

    async def user(self, user_id: str, *, credit: int = 0, email: str | None = None) -> User:
        user = await self.ledger.create_user(user_id=user_id, email=email)
        self.user_ids.append(user_id)
        if credit:
            await self.ledger.post_entry(
                user_id, kind="grant", amount=credit, reference=f"grant:{user_id}"
            )
        return user

    async def balance(self, user_id: str) -> int:
        found = await self.ledger.balance(user_id)
        assert found is not None
        return found[0]


Scenario = Callable[[Books], Awaitable[None]]


async def assert_books_balance(books: Books) -> None:
    for user_id in books.user_ids:
        entries = await books.ledger.list_entries(user_id)
        assert await books.balance(user_id) == sum(e.amount for e in entries), user_id
        running = 0
        for entry in entries:
            running += entry.amount
            assert entry.balance_after == running, entry


class Contract:
    def __init__(self, kind: str, make: Callable[[], Ledger]) -> None:
        self.kind = kind
        self.make = make

    def run(self, scenario: Scenario) -> None:
        async def main() -> None:
            ledger = self.make()
            await ledger.open()
            try:
                books = Books(ledger)
                await scenario(books)
                await assert_books_balance(books)
            finally:
                await ledger.close()

        asyncio.run(main())


@pytest.fixture
def contract(database: Database) -> Contract:
    """The contract on each ledger database (``database`` in tests/support/fixtures.py)."""
    return Contract(database.kind, database.ledger)


def usage(request_id: str, user_id: str, cost: int, at: datetime = T0) -> UsageRecord:
    return UsageRecord(
        request_id=request_id, user_id=user_id, key_id="key_1", model="gpt-4o",
        provider="openai", endpoint="/v1/chat/completions", prompt_tokens=120,
        completion_tokens=30, cached_tokens=0, reasoning_tokens=0, price_input=2_500_000_000,
        price_cached_input=None, price_output=10_000_000_000, cost=cost, status="ok",
        usage_source="upstream", latency_ms=42, created_at=at,
    )  # fmt: skip


async def contended(
    ledger: Ledger, user_ids: Sequence[str], calls: Sequence[Coroutine[Any, Any, Any]]
) -> list[Any]:
    """Runs ``calls`` concurrently; on PostgreSQL, all are made to queue on the users' row locks
    first (from their own pool connections), so they really overlap instead of taking turns."""
    if not isinstance(ledger, PostgresLedger):
        return list(await asyncio.gather(*calls))
    async with ledger.pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "SELECT 1 FROM users WHERE id = ANY($1) ORDER BY id FOR UPDATE", list(user_ids)
        )
        tasks = [asyncio.create_task(c) for c in calls]
        await _until_lock_waiters(conn, len(tasks), tasks)
    return list(await asyncio.gather(*tasks))


async def _until_lock_waiters(
    conn: Any, count: int, tasks: Sequence[asyncio.Task[Any]], limit: float = 20.0
) -> None:
    deadline = time.monotonic() + limit
    while not any(t.done() for t in tasks):
        # pg_locks, not pg_stat_activity: the latter is a snapshot frozen for the length of
        # our transaction.
        waiting = await conn.fetchval("SELECT count(DISTINCT pid) FROM pg_locks WHERE NOT granted")
        if waiting >= count:
            return
        assert time.monotonic() < deadline, f"only {waiting} of {count} calls reached the lock"
        await asyncio.sleep(0.01)


def aware_utc(value: datetime) -> bool:
    return value.utcoffset() == timedelta(0)


# -- users and keys ---------------------------------------------------------------------


def test_created_user_starts_empty_and_reads_back(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        created = await books.user("alice", email="a@example.com")
        assert (created.id, created.email, created.balance) == ("alice", "a@example.com", 0)
        found = await books.ledger.get_user("alice")
        assert found is not None
        assert (found.id, found.email, found.balance, found.version) == (
            "alice",
            "a@example.com",
            0,
            0,
        )
        assert aware_utc(found.created_at)
        assert await books.ledger.balance("alice") == (0, 0)
        assert await books.ledger.get_user("nobody") is None
        assert await books.ledger.balance("nobody") is None
        await books.ledger.ping()

    contract.run(scenario)


def test_creating_an_existing_user_raises_duplicate_user(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        await books.user("alice", credit=5 * USD)
        with pytest.raises(DuplicateUser):
            await books.ledger.create_user(user_id="alice", email="other@example.com")
        found = await books.ledger.get_user("alice")
        assert found is not None and found.email is None and found.balance == 5 * USD

    contract.run(scenario)


def test_keys_are_listed_newest_first_and_found_by_hash(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        await books.user("alice", credit=3 * USD)
        first = await books.ledger.create_key(
            "alice", key_id="k1", key_hash="h1", prefix="gw-aaa", name="laptop"
        )
        await books.ledger.create_key(
            "alice", key_id="k2", key_hash="h2", prefix="gw-bbb", name=None
        )
        assert (first.id, first.user_id, first.prefix, first.name) == (
            "k1",
            "alice",
            "gw-aaa",
            "laptop",
        )
        assert first.revoked_at is None and aware_utc(first.created_at)
        assert [k.id for k in await books.ledger.list_keys("alice")] == ["k2", "k1"]
        found = await books.ledger.find_key("h1")
        assert found is not None
        key, user = found
        assert key.id == "k1" and key.usable(datetime.now(UTC))
        assert (user.id, user.balance, user.version) == ("alice", 3 * USD, 1)
        assert await books.ledger.find_key("no-such-hash") is None
        assert await books.ledger.list_keys("nobody") == []

    contract.run(scenario)


def test_key_for_unknown_user_raises_unknown_user(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        with pytest.raises(UnknownUser):
            await books.ledger.create_key(
                "ghost", key_id="k1", key_hash="h1", prefix="gw-x", name=None
            )
        assert await books.ledger.find_key("h1") is None

    contract.run(scenario)


def test_revoked_key_is_flagged_and_revoking_again_keeps_the_first_time(
    contract: Contract,
) -> None:
    async def scenario(books: Books) -> None:
        await books.user("alice")
        await books.ledger.create_key("alice", key_id="k1", key_hash="h1", prefix="gw-a", name=None)
        revoked = await books.ledger.revoke_key("k1")
        assert revoked is not None and revoked.revoked_at is not None
        assert aware_utc(revoked.revoked_at)
        again = await books.ledger.revoke_key("k1")
        assert again is not None and again.revoked_at == revoked.revoked_at
        found = await books.ledger.find_key("h1")
        assert found is not None
        assert found[0].revoked_at == revoked.revoked_at
        assert not found[0].usable(datetime.now(UTC))
        assert [k.revoked_at for k in await books.ledger.list_keys("alice")] == [revoked.revoked_at]
        assert await books.ledger.revoke_key("no-such-key") is None

    contract.run(scenario)


# -- entries ----------------------------------------------------------------------------


def test_reposted_reference_moves_money_once(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        await books.user("alice")
        first = await books.ledger.post_entry(
            "alice",
            kind="topup",
            amount=10 * USD,
            reference="evt_1",
            reason="stripe",
            actor="stripe",
        )
        again = await books.ledger.post_entry(
            "alice",
            kind="topup",
            amount=10 * USD,
            reference="evt_1",
            reason="stripe",
            actor="stripe",
        )
        assert first.created and not again.created
        assert (again.id, again.amount, again.balance_after) == (first.id, 10 * USD, 10 * USD)
        assert (first.kind, first.reason, first.actor) == ("topup", "stripe", "stripe")
        assert aware_utc(first.created_at)
        assert await books.balance("alice") == 10 * USD
        assert len(await books.ledger.list_entries("alice")) == 1

    contract.run(scenario)


def test_reference_reused_for_another_movement_is_refused(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        await books.user("alice")
        await books.user("bob")
        await books.ledger.post_entry("alice", kind="topup", amount=10 * USD, reference="evt_1")
        for user, kind, amount in (
            ("alice", "topup", 11 * USD),
            ("bob", "topup", 10 * USD),
            ("alice", "grant", 10 * USD),
        ):
            with pytest.raises(ReferenceConflict):
                await books.ledger.post_entry(user, kind=kind, amount=amount, reference="evt_1")
        assert await books.balance("alice") == 10 * USD
        assert await books.balance("bob") == 0

    contract.run(scenario)


def test_unknown_entry_kind_is_refused_before_any_change(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        await books.user("alice", credit=USD)
        with pytest.raises(ValueError, match="kind"):
            await books.ledger.post_entry("alice", kind="gift", amount=USD, reference="g1")
        assert await books.balance("alice") == USD

    contract.run(scenario)


def test_entry_for_unknown_user_raises_unknown_user(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        with pytest.raises(UnknownUser):
            await books.ledger.post_entry("ghost", kind="grant", amount=USD, reference="g1")
        with pytest.raises(UnknownUser):
            await books.ledger.set_balance(
                "ghost", balance=USD, reference="s1", reason=None, actor=None
            )

    contract.run(scenario)


def test_admin_debit_beyond_balance_is_refused_and_changes_nothing(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        await books.user("alice", credit=2 * USD)
        before = await books.ledger.balance("alice")
        with pytest.raises(InsufficientFunds):
            await books.ledger.post_entry(
                "alice", kind="adjustment", amount=-3 * USD, reference="adm_1", actor="ops"
            )
        assert await books.ledger.balance("alice") == before
        assert len(await books.ledger.list_entries("alice")) == 1
        # The refused reference was not consumed: a fitting debit may use it.
        fitting = await books.ledger.post_entry(
            "alice", kind="adjustment", amount=-2 * USD, reference="adm_1", actor="ops"
        )
        assert fitting.created and fitting.balance_after == 0

    contract.run(scenario)


def test_set_balance_writes_one_adjustment_for_the_difference(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        await books.user("alice", credit=5 * USD)
        down = await books.ledger.set_balance(
            "alice", balance=2 * USD, reference="set_1", reason="correction", actor="ops"
        )
        assert (down.kind, down.amount, down.balance_after) == ("adjustment", -3 * USD, 2 * USD)
        assert (down.reason, down.actor, down.created) == ("correction", "ops", True)
        up = await books.ledger.set_balance(
            "alice", balance=7 * USD, reference="set_2", reason=None, actor="ops"
        )
        assert (up.amount, up.balance_after) == (5 * USD, 7 * USD)
        replay = await books.ledger.set_balance(
            "alice", balance=1 * USD, reference="set_2", reason=None, actor="ops"
        )
        assert not replay.created and replay.id == up.id
        assert await books.balance("alice") == 7 * USD
        kinds = [e.kind for e in await books.ledger.list_entries("alice")]
        assert kinds == ["grant", "adjustment", "adjustment"]

    contract.run(scenario)


def test_every_balance_change_bumps_the_version(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        await books.user("alice")
        seen = [await books.ledger.balance("alice")]
        await books.ledger.post_entry("alice", kind="grant", amount=USD, reference="g1")
        seen.append(await books.ledger.balance("alice"))
        await books.ledger.set_balance(
            "alice", balance=3 * USD, reference="s1", reason=None, actor=None
        )
        seen.append(await books.ledger.balance("alice"))
        await books.ledger.write_usage([usage("r1", "alice", 100)])
        seen.append(await books.ledger.balance("alice"))
        versions = [v for _, v in seen if v is not None]
        assert versions == sorted(set(versions)) and len(versions) == 4
        # A replay moves nothing and must not look like a change either.
        await books.ledger.write_usage([usage("r1", "alice", 100)])
        await books.ledger.post_entry("alice", kind="grant", amount=USD, reference="g1")
        assert await books.ledger.balance("alice") == seen[-1]

    contract.run(scenario)


def test_concurrent_posts_of_one_reference_move_money_once(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        await books.user("alice")
        entries = await contended(books.ledger, ["alice"], [
            books.ledger.post_entry("alice", kind="topup", amount=USD, reference="evt_1")
            for _ in range(3)
        ])  # fmt: skip
        assert sorted(e.created for e in entries) == [False, False, True]
        assert len({e.id for e in entries}) == 1
        assert await books.balance("alice") == USD

    contract.run(scenario)


# -- usage ------------------------------------------------------------------------------


def test_replayed_usage_batch_debits_once(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        await books.user("alice", credit=USD)
        batch = [
            usage(f"r{i}", "alice", 1000 * (i + 1), T0 + timedelta(seconds=i)) for i in range(3)
        ]
        assert await books.ledger.write_usage(batch) == ["r0", "r1", "r2"]
        assert await books.ledger.write_usage(batch) == []
        assert await books.balance("alice") == USD - 6000
        rows, _ = await books.ledger.list_usage("alice", limit=10, offset=0)
        assert len(rows) == 3

    contract.run(scenario)


def test_overlapping_usage_batch_debits_only_new_records(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        await books.user("alice", credit=USD)
        await books.user("bob", credit=USD)
        await books.ledger.write_usage([usage("r1", "alice", 100), usage("r2", "bob", 200)])
        later = T0 + timedelta(seconds=1)
        # r1 comes back with another cost: the first record stands, nothing is re-priced.
        second = [
            usage("r1", "alice", 999),
            usage("r3", "alice", 300, later),
            usage("r2", "bob", 999),
            usage("r4", "bob", 400, later),
        ]
        assert await books.ledger.write_usage(second) == ["r3", "r4"]
        assert await books.balance("alice") == USD - 400
        assert await books.balance("bob") == USD - 600
        refs = [e.reference for e in await books.ledger.list_entries("alice")]
        assert refs == ["grant:alice", "usage:r1", "usage:r3"]

    contract.run(scenario)


def test_duplicate_request_id_within_one_batch_is_recorded_once(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        await books.user("alice", credit=USD)
        batch = [usage("r1", "alice", 100), usage("r1", "alice", 5000)]
        assert await books.ledger.write_usage(batch) == ["r1"]
        assert await books.balance("alice") == USD - 100

    contract.run(scenario)


def test_usage_batch_entries_carry_running_balance(contract: Contract) -> None:
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
        await books.ledger.write_usage(batch)
        alice = [
            (e.reference, e.kind, e.amount, e.balance_after)
            for e in await books.ledger.list_entries("alice")
        ][1:]
        assert alice == [
            ("usage:a1", "usage", -1000, 9000),
            ("usage:a2", "usage", -2000, 7000),
            ("usage:a3", "usage", -3000, 4000),
        ]
        bob = [e.balance_after for e in await books.ledger.list_entries("bob")]
        assert bob == [500, 400, 200]
        assert await books.balance("alice") == 4000

    contract.run(scenario)


def test_zero_cost_usage_is_recorded_without_ledger_entry(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        await books.user("alice", credit=USD)
        before = await books.ledger.balance("alice")
        assert await books.ledger.write_usage([usage("free", "alice", 0)]) == ["free"]
        rows, _ = await books.ledger.list_usage("alice", limit=10, offset=0)
        assert [(r.request_id, r.cost) for r in rows] == [("free", 0)]
        assert await books.ledger.balance("alice") == before
        assert [e.reference for e in await books.ledger.list_entries("alice")] == ["grant:alice"]

    contract.run(scenario)


def test_usage_beyond_the_balance_is_still_billed(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        await books.user("alice", credit=100)
        assert await books.ledger.write_usage([usage("r1", "alice", 250)]) == ["r1"]
        assert await books.balance("alice") == -150
        # Negative usage entries may go below zero too; operator entries may not.
        await books.ledger.post_entry("alice", kind="usage", amount=-50, reference="u:x")
        with pytest.raises(InsufficientFunds):
            await books.ledger.post_entry("alice", kind="refund", amount=-1, reference="rf")
        assert await books.balance("alice") == -200

    contract.run(scenario)


def test_usage_for_unknown_user_is_refused_whole(
    contract: Contract, request: pytest.FixtureRequest
) -> None:

    async def scenario(books: Books) -> None:
        await books.user("alice", credit=USD)
        with pytest.raises(UnknownUser):
            await books.ledger.write_usage([usage("r1", "alice", 100), usage("r2", "ghost", 1)])
        assert await books.ledger.list_usage("alice", limit=10, offset=0) == ([], False)
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
        await books.ledger.write_usage([record])
        rows, has_more = await books.ledger.list_usage("alice", limit=1, offset=0)
        assert rows == [record] and not has_more
        assert aware_utc(rows[0].created_at)

    contract.run(scenario)


def test_usage_pages_newest_first_without_gaps_or_repeats(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        await books.user("alice", credit=USD)
        await books.user("bob", credit=USD)
        records = [usage(f"r{i:02}", "alice", 10, T0 + timedelta(seconds=i)) for i in range(25)]
        await books.ledger.write_usage(records[::2])
        await books.ledger.write_usage([usage("other", "bob", 10, T0), *records[1::2]])
        pages: list[list[str]] = []
        has_more = True
        while has_more:
            rows, has_more = await books.ledger.list_usage("alice", limit=7, offset=7 * len(pages))
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
        first, second = await contended(books.ledger, ["alice"], [
            books.ledger.write_usage(records[:6]),
            books.ledger.write_usage(records[3:]),
        ])  # fmt: skip
        assert not set(first) & set(second)
        assert sorted(first + second) == [r.request_id for r in records]
        assert await books.balance("alice") == USD - sum(r.cost for r in records)
        assert len(await books.ledger.list_entries("alice")) == 1 + len(records)

    contract.run(scenario)


def test_concurrent_batches_over_several_shared_users_all_land(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        for name in ("u1", "u2", "u3"):
            await books.user(name, credit=USD)
        forward = [usage(f"f{i}", f"u{i}", 10) for i in (1, 2, 3)]
        backward = [usage(f"b{i}", f"u{i}", 20) for i in (3, 2, 1)]
        done = await contended(books.ledger, ["u1", "u2", "u3"], [
            books.ledger.write_usage(forward), books.ledger.write_usage(backward),
        ])  # fmt: skip
        assert sorted(map(len, done)) == [3, 3]
        for name in ("u1", "u2", "u3"):
            assert await books.balance(name) == USD - 30

    contract.run(scenario)


# -- audit ------------------------------------------------------------------------------


def test_audit_events_filter_by_target_and_action_newest_first(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        events = [
            AuditEvent(actor="ops", action="user.create", target="alice"),
            AuditEvent(
                actor="ops",
                action="credits.add",
                target="alice",
                amount=5 * USD,
                reason="welcome",
                details={"reference": "adm_1", "n": [1, 2]},
            ),
            AuditEvent(actor="ops", action="credits.add", target="bob", amount=USD),
            AuditEvent(actor="cli", action="key.revoke", target="alice", details={}),
        ]
        for event in events:
            await books.ledger.record_audit(event)
        everything, more = await books.ledger.list_audit(
            target=None, action=None, limit=10, offset=0
        )
        assert [e.action for e in everything] == [
            "key.revoke",
            "credits.add",
            "credits.add",
            "user.create",
        ]
        assert not more
        added = everything[2]
        assert (added.actor, added.target, added.amount, added.reason) == (
            "ops",
            "alice",
            5 * USD,
            "welcome",
        )
        assert added.details == {"reference": "adm_1", "n": [1, 2]}
        assert added.id is not None and added.created_at == events[1].created_at
        assert everything[0].details == {} and everything[3].details is None
        alice, _ = await books.ledger.list_audit(target="alice", action=None, limit=10, offset=0)
        assert [e.action for e in alice] == ["key.revoke", "credits.add", "user.create"]
        credits, _ = await books.ledger.list_audit(
            target=None, action="credits.add", limit=10, offset=0
        )
        assert [e.target for e in credits] == ["bob", "alice"]
        both, _ = await books.ledger.list_audit(
            target="bob", action="credits.add", limit=10, offset=0
        )
        assert [e.amount for e in both] == [USD]
        page, more = await books.ledger.list_audit(target="alice", action=None, limit=2, offset=1)
        assert [e.action for e in page] == ["credits.add", "user.create"] and not more
        page, more = await books.ledger.list_audit(target=None, action=None, limit=2, offset=0)
        assert len(page) == 2 and more

    contract.run(scenario)


# -- PostgreSQL only --------------------------------------------------------------------


@pytest.mark.production
def test_postgres_ledgers_starting_together_migrate_once(pg_dsn: str) -> None:
    async def main() -> None:
        ledgers = [PostgresLedger(pg_dsn) for _ in range(4)]
        await asyncio.gather(*(ledger.open() for ledger in ledgers))
        try:
            await ledgers[0].close()
            await ledgers[0].open()  # reopening an up-to-date database changes nothing
            versions = await ledgers[0].pool.fetch(
                "SELECT version FROM schema_migrations ORDER BY version"
            )
            assert [r["version"] for r in versions] == [v for v, _ in migrations("postgres")]
        finally:
            for ledger in ledgers:
                await ledger.close()

    asyncio.run(main())


@pytest.mark.production
def test_postgres_ledger_translates_only_its_own_constraints(pg_dsn: str) -> None:
    async def main() -> None:
        ledger = PostgresLedger(pg_dsn)
        await ledger.open()
        try:
            await ledger.create_user(user_id="alice", email=None)
            await ledger.create_key("alice", key_id="k1", key_hash="h1", prefix="p", name=None)
            with pytest.raises(asyncpg.UniqueViolationError):
                await ledger.create_key("alice", key_id="k2", key_hash="h1", prefix="p", name=None)
        finally:
            await ledger.close()

    asyncio.run(main())


@pytest.mark.production
def test_postgres_reversed_overlapping_batches_do_not_deadlock(pg_dsn: str) -> None:
    # An uncommitted row r2 makes both batches stop halfway through their inserts; a writer
    # taking keys in batch order would then hold r1 and want r3 while the other holds r3
    # and wants r1.
    async def main() -> None:
        ledger = PostgresLedger(pg_dsn)
        await ledger.open()
        try:
            books = Books(ledger)
            for name in ("u1", "u2", "u3"):
                await books.user(name, credit=USD)
            batch = [usage(f"r{i}", f"u{i}", 10 * i) for i in (1, 2, 3)]
            async with ledger.pool.acquire() as conn:
                tx = conn.transaction()
                await tx.start()
                await conn.execute(
                    "INSERT INTO usage_records (request_id, user_id, model, provider, endpoint,"
                    " prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens,"
                    " price_input, price_output, cost, status, usage_source, latency_ms,"
                    " created_at) VALUES ('r2', 'u2', 'm', 'p', 'e', 0, 0, 0, 0, 0, 0, 0, 'ok',"
                    " 'upstream', 0, now())"
                )
                tasks = [asyncio.create_task(ledger.write_usage(b)) for b in (batch, batch[::-1])]
                await _until_lock_waiters(conn, 2, tasks)
                await tx.rollback()
            done = await asyncio.gather(*tasks)
            assert sorted(rid for ids in done for rid in ids) == ["r1", "r2", "r3"]
            for i in (1, 2, 3):
                assert await books.balance(f"u{i}") == USD - 10 * i
            await assert_books_balance(books)
        finally:
            await ledger.close()

    asyncio.run(main())
