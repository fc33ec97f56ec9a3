"""The Journal's money movements and versions, on every database (tests/ledger/books.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from gateway.ledger.base import InsufficientFunds, ReferenceConflict, UnknownUser
from gateway.records import AuditEvent, Entry
from tests.ledger.books import T0, USD, Books, Contract, aware_utc, contended, usage


def test_reposted_reference_moves_money_once(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        await books.user("alice")
        first = await books.journal.post_entry(
            "alice",
            kind="topup",
            amount=10 * USD,
            reference="evt_1",
            reason="stripe",
            actor="stripe",
        )
        again = await books.journal.post_entry(
            "alice",
            kind="topup",
            amount=10 * USD,
            reference="evt_1",
            reason="stripe",
            actor="stripe",
        )
        assert first.created
        assert not again.created
        assert (again.id, again.amount, again.balance_after) == (first.id, 10 * USD, 10 * USD)
        assert (first.kind, first.reason, first.actor) == ("topup", "stripe", "stripe")
        assert aware_utc(first.created_at)
        assert await books.balance("alice") == 10 * USD
        assert len(await books.journal.list_entries("alice")) == 1

    contract.run(scenario)


def test_reference_reused_for_another_movement_is_refused(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        await books.user("alice")
        await books.user("bob")
        await books.journal.post_entry("alice", kind="topup", amount=10 * USD, reference="evt_1")
        for user, kind, amount in (
            ("alice", "topup", 11 * USD),
            ("bob", "topup", 10 * USD),
            ("alice", "grant", 10 * USD),
        ):
            with pytest.raises(ReferenceConflict):
                await books.journal.post_entry(user, kind=kind, amount=amount, reference="evt_1")
        assert await books.balance("alice") == 10 * USD
        assert await books.balance("bob") == 0

    contract.run(scenario)


def test_unknown_entry_kind_is_refused_before_any_change(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        await books.user("alice", credit=USD)
        with pytest.raises(ValueError, match="kind"):
            await books.journal.post_entry("alice", kind="gift", amount=USD, reference="g1")
        assert await books.balance("alice") == USD

    contract.run(scenario)


def test_entry_for_unknown_user_raises_unknown_user(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        with pytest.raises(UnknownUser):
            await books.journal.post_entry("ghost", kind="grant", amount=USD, reference="g1")
        with pytest.raises(UnknownUser):
            await books.journal.set_balance(
                "ghost", balance=USD, reference="s1", reason=None, actor=None
            )

    contract.run(scenario)


def test_admin_debit_beyond_balance_is_refused_and_changes_nothing(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        await books.user("alice", credit=2 * USD)
        before = await books.journal.balance("alice")
        with pytest.raises(InsufficientFunds):
            await books.journal.post_entry(
                "alice", kind="adjustment", amount=-3 * USD, reference="adm_1", actor="ops"
            )
        assert await books.journal.balance("alice") == before
        assert len(await books.journal.list_entries("alice")) == 1
        # The refused reference was not consumed: a fitting debit may use it.
        fitting = await books.journal.post_entry(
            "alice", kind="adjustment", amount=-2 * USD, reference="adm_1", actor="ops"
        )
        assert fitting.created
        assert fitting.balance_after == 0

    contract.run(scenario)


def test_set_balance_writes_one_adjustment_for_the_difference(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        await books.user("alice", credit=5 * USD)
        down = await books.journal.set_balance(
            "alice", balance=2 * USD, reference="set_1", reason="correction", actor="ops"
        )
        assert (down.kind, down.amount, down.balance_after) == ("adjustment", -3 * USD, 2 * USD)
        assert (down.reason, down.actor, down.created) == ("correction", "ops", True)
        up = await books.journal.set_balance(
            "alice", balance=7 * USD, reference="set_2", reason=None, actor="ops"
        )
        assert (up.amount, up.balance_after) == (5 * USD, 7 * USD)
        replay = await books.journal.set_balance(
            "alice", balance=1 * USD, reference="set_2", reason=None, actor="ops"
        )
        assert not replay.created
        assert replay.id == up.id
        assert await books.balance("alice") == 7 * USD
        kinds = [e.kind for e in await books.journal.list_entries("alice")]
        assert kinds == ["grant", "adjustment", "adjustment"]

    contract.run(scenario)


def test_debit_up_to_takes_what_is_left_and_never_below_zero(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        await books.user("alice", credit=3 * USD)
        entry = await books.journal.debit_up_to(
            "alice", kind="refund", amount=5 * USD, reference="r:1", reason=None, actor=None
        )
        assert (entry.amount, entry.balance_after, entry.version) == (-3 * USD, 0, 2)
        replay = await books.journal.debit_up_to(
            "alice", kind="refund", amount=5 * USD, reference="r:1", reason=None, actor=None
        )
        assert not replay.created
        assert (replay.id, replay.version) == (entry.id, 2)
        nothing = await books.journal.debit_up_to(
            "alice", kind="refund", amount=USD, reference="r:2", reason=None, actor=None
        )
        assert (nothing.amount, nothing.balance_after) == (0, 0)

    contract.run(scenario)


def test_every_balance_change_bumps_the_version(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        await books.user("alice")
        seen = [await books.journal.balance("alice")]
        await books.journal.post_entry("alice", kind="grant", amount=USD, reference="g1")
        seen.append(await books.journal.balance("alice"))
        await books.journal.set_balance(
            "alice", balance=3 * USD, reference="s1", reason=None, actor=None
        )
        seen.append(await books.journal.balance("alice"))
        await books.journal.write_usage([usage("r1", "alice", 100)])
        seen.append(await books.journal.balance("alice"))
        versions = [v for _, v in seen if v is not None]
        assert versions == sorted(set(versions))
        assert len(versions) == 4
        # A replay moves nothing and must not look like a change either.
        await books.journal.write_usage([usage("r1", "alice", 100)])
        await books.journal.post_entry("alice", kind="grant", amount=USD, reference="g1")
        assert await books.journal.balance("alice") == seen[-1]

    contract.run(scenario)


def test_concurrent_posts_of_one_reference_move_money_once(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        await books.user("alice")
        entries = await contended(
            books.ledger,
            ["alice"],
            [
                books.journal.post_entry("alice", kind="topup", amount=USD, reference="evt_1")
                for _ in range(3)
            ],
        )
        assert sorted(e.created for e in entries) == [False, False, True]
        assert len({e.id for e in entries}) == 1
        assert {e.version for e in entries} == {1}
        assert await books.balance("alice") == USD

    contract.run(scenario)


# -- versions -----------------------------------------------------------------------------


def test_every_entry_carries_the_user_version_right_after_it(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        await books.user("alice", credit=5 * USD)
        posted = await books.journal.post_entry("alice", kind="grant", amount=USD, reference="g2")
        assert posted.version == await books.version("alice") == 2
        adjusted = await books.journal.set_balance(
            "alice", balance=USD, reference="s1", reason=None, actor="ops"
        )
        assert adjusted.version == await books.version("alice") == 3
        read_back = await books.journal.list_entries("alice")
        assert [e.version for e in read_back] == [1, 2, 3]
        assert read_back[1:] == [posted, adjusted]

    contract.run(scenario)


def test_replayed_reference_carries_the_version_of_the_first_post(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        await books.user("alice", credit=5 * USD)
        first = await books.journal.post_entry("alice", kind="topup", amount=USD, reference="t1")
        set_first = await books.journal.set_balance(
            "alice", balance=USD, reference="s1", reason=None, actor=None
        )
        # Later movements raise the user's version; the replays still answer the first one's.
        await books.journal.post_entry("alice", kind="grant", amount=USD, reference="g2")
        await books.journal.write_usage([usage("r1", "alice", 10)])
        again = await books.journal.post_entry("alice", kind="topup", amount=USD, reference="t1")
        set_again = await books.journal.set_balance(
            "alice", balance=9 * USD, reference="s1", reason=None, actor=None
        )
        assert (first.version, set_first.version) == (2, 3)
        assert not again.created
        assert again.version == first.version
        assert not set_again.created
        assert set_again.version == set_first.version
        assert await books.version("alice") == 5

    contract.run(scenario)


def test_entries_after_a_version_are_exactly_the_later_ones(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        await books.user("alice", credit=5 * USD)
        await books.user("bob", credit=USD)
        loaded = await books.version("alice")  # what a balance cache would have loaded
        await books.journal.post_entry("alice", kind="grant", amount=USD, reference="g2")
        await books.journal.write_usage(
            [usage("a1", "alice", 10), usage("b1", "bob", 20), usage("a2", "alice", 30, T0)]
        )
        await books.journal.set_balance(
            "alice", balance=USD, reference="s1", reason=None, actor=None
        )
        later = await books.journal.entries_after("alice", loaded)
        assert [e.reference for e in later] == ["g2", "usage:a1", "usage:a2", "s1"]
        assert [e.version for e in later] == [2, 3, 4, 5]
        everything = await books.journal.list_entries("alice")
        assert later == everything[1:]
        assert await books.journal.entries_after("alice", 3) == everything[3:]
        assert await books.journal.entries_after("alice", 5) == []
        assert await books.journal.entries_after("alice", 0) == everything
        assert await books.journal.entries_after("nobody", 0) == []
        assert [e.user_id for e in await books.journal.entries_after("bob", 0)] == ["bob"] * 2

    contract.run(scenario)


def test_last_entry_version_is_the_user_version_after_posts_and_batches(
    contract: Contract,
) -> None:
    async def scenario(books: Books) -> None:
        for name in ("alice", "bob"):
            await books.user(name, credit=USD)
        batches = [
            [usage("a1", "alice", 5), usage("b1", "bob", 7), usage("a2", "alice", 0)],
            [usage("a1", "alice", 5), usage("a3", "alice", 9, T0 + timedelta(seconds=1))],
            [usage(f"b{i}", "bob", i, T0 + timedelta(seconds=i)) for i in range(2, 6)],
        ]
        for n, batch in enumerate(batches):
            await books.journal.post_entry("alice", kind="grant", amount=n + 1, reference=f"g{n}")
            await books.journal.write_usage(batch)
            await books.journal.debit_up_to(
                "bob", kind="refund", amount=1, reference=f"rf{n}", reason=None, actor=None
            )
            for name in ("alice", "bob"):
                entries = await books.journal.list_entries(name)
                assert entries[-1].version == await books.version(name) == len(entries)
        # grant + 3 grants + usage a1, a3 (a2 costs nothing, the replayed a1 is not debited)
        assert await books.version("alice") == 6
        # grant + usage b1..b5 + 3 refunds
        assert await books.version("bob") == 9

    contract.run(scenario)


def test_concurrent_posts_for_one_user_get_consecutive_versions(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        await books.user("alice", credit=USD)
        entries = await contended(
            books.ledger,
            ["alice"],
            [
                books.journal.post_entry("alice", kind="grant", amount=i, reference=f"g{i}")
                for i in range(1, 6)
            ],
        )
        assert sorted(e.version or 0 for e in entries) == [2, 3, 4, 5, 6]
        for entry in entries:
            assert entry.balance_after == USD + sum(
                e.amount for e in entries if (e.version or 0) <= (entry.version or 0)
            )

    contract.run(scenario)


# -- audit in the same transaction ---------------------------------------------------------


def test_money_changes_write_their_audit_event_once(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        await books.user("alice", credit=USD)

        def audited(e: Entry) -> AuditEvent:
            return AuditEvent(
                actor="ops",
                action=f"{e.kind}:{e.reference}",
                target=e.user_id,
                amount=e.amount,
                details={"balance_after": e.balance_after, "version": e.version},
            )

        await books.journal.post_entry(
            "alice", kind="grant", amount=USD, reference="g2", audit=audited
        )
        await books.journal.post_entry(
            "alice", kind="grant", amount=USD, reference="g2", audit=audited
        )  # a replay changes nothing: no second event
        with pytest.raises(InsufficientFunds):  # refused: the event rolls back with it
            await books.journal.post_entry(
                "alice", kind="adjustment", amount=-9 * USD, reference="a1", audit=audited
            )
        await books.journal.set_balance(
            "alice", balance=USD // 2, reference="s1", reason=None, actor="ops", audit=audited
        )
        await books.journal.debit_up_to(
            "alice", kind="refund", amount=USD, reference="r1", reason=None, actor="ops",
            audit=audited,
        )  # fmt: skip
        events, _ = await books.ledger.audit.list_audit(
            target="alice", action=None, limit=10, offset=0
        )
        assert [(e.action, e.amount, e.details) for e in reversed(events)] == [
            ("grant:g2", USD, {"balance_after": 2 * USD, "version": 2}),
            ("adjustment:s1", -3 * USD // 2, {"balance_after": USD // 2, "version": 3}),
            ("refund:r1", -USD // 2, {"balance_after": 0, "version": 4}),
        ]

    contract.run(scenario)
