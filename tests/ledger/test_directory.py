"""The Directory (users and keys) and the Audit trail, on every database (tests/ledger/books.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gateway.ledger.base import DuplicateUser, UnknownUser
from gateway.records import AuditEvent, Limits
from tests.ledger.books import USD, Books, Contract, aware_utc, usage


def test_created_user_starts_empty_and_reads_back(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        created = await books.user("alice", email="a@example.com")
        assert (created.id, created.email, created.balance) == ("alice", "a@example.com", 0)
        found = await books.directory.get_user("alice")
        assert found is not None
        assert (found.id, found.email, found.balance, found.version) == (
            "alice",
            "a@example.com",
            0,
            0,
        )
        assert aware_utc(found.created_at)
        assert await books.journal.balance("alice") == (0, 0)
        assert await books.directory.get_user("nobody") is None
        assert await books.journal.balance("nobody") is None
        await books.ledger.ping()

    contract.run(scenario)


def test_creating_an_existing_user_raises_duplicate_user(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        await books.user("alice", credit=5 * USD)
        with pytest.raises(DuplicateUser):
            await books.directory.create_user(user_id="alice", email="other@example.com")
        found = await books.directory.get_user("alice")
        assert found is not None
        assert found.email is None
        assert found.balance == 5 * USD

    contract.run(scenario)


def test_keys_are_listed_newest_first_and_found_by_hash(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        await books.user("alice", credit=3 * USD)
        first = await books.directory.create_key(
            "alice", key_id="k1", key_hash="h1", prefix="gw-aaa", name="laptop"
        )
        await books.directory.create_key(
            "alice", key_id="k2", key_hash="h2", prefix="gw-bbb", name=None
        )
        assert (first.id, first.user_id, first.prefix, first.name) == (
            "k1",
            "alice",
            "gw-aaa",
            "laptop",
        )
        assert first.revoked_at is None
        assert aware_utc(first.created_at)
        assert [k.id for k in await books.directory.list_keys("alice")] == ["k2", "k1"]
        found = await books.directory.find_key("h1")
        assert found is not None
        key, user = found
        assert key.id == "k1"
        assert key.usable(datetime.now(UTC))
        assert (user.id, user.balance, user.version) == ("alice", 3 * USD, 1)
        assert aware_utc(user.created_at)
        assert await books.directory.find_key("no-such-hash") is None
        assert await books.directory.list_keys("nobody") == []

    contract.run(scenario)


def test_key_for_unknown_user_raises_unknown_user(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        with pytest.raises(UnknownUser):
            await books.directory.create_key(
                "ghost", key_id="k1", key_hash="h1", prefix="gw-x", name=None
            )
        assert await books.directory.find_key("h1") is None

    contract.run(scenario)


def test_revoked_key_is_flagged_and_revoking_again_keeps_the_first_time(
    contract: Contract,
) -> None:
    async def scenario(books: Books) -> None:
        await books.user("alice")
        await books.directory.create_key(
            "alice", key_id="k1", key_hash="h1", prefix="gw-a", name=None
        )
        revoked = await books.directory.revoke_key("k1")
        assert revoked is not None
        assert revoked.revoked_at is not None
        assert aware_utc(revoked.revoked_at)
        again = await books.directory.revoke_key("k1")
        assert again is not None
        assert again.revoked_at == revoked.revoked_at
        found = await books.directory.find_key("h1")
        assert found is not None
        assert found[0].revoked_at == revoked.revoked_at
        assert not found[0].usable(datetime.now(UTC))
        assert [k.revoked_at for k in await books.directory.list_keys("alice")] == [
            revoked.revoked_at
        ]
        assert await books.directory.revoke_key("no-such-key") is None

    contract.run(scenario)


def test_directory_changes_write_their_audit_event_once(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        directory, audit = books.directory, books.ledger.audit

        def event(action: str) -> AuditEvent:
            return AuditEvent(actor="ops", action=action, target="alice")

        await directory.create_user(
            user_id="alice", email=None, audit=lambda u: event(f"user.create:{u.id}")
        )
        books.user_ids.append("alice")
        with pytest.raises(DuplicateUser):
            await directory.create_user(user_id="alice", email=None, audit=lambda u: event("x"))
        await directory.create_key(
            "alice", key_id="k1", key_hash="h1", prefix="p", name=None,
            audit=lambda k: event(f"key.create:{k.id}"),
        )  # fmt: skip
        with pytest.raises(UnknownUser):
            await directory.create_key(
                "ghost", key_id="k2", key_hash="h2", prefix="p", name=None,
                audit=lambda k: event("x"),
            )  # fmt: skip
        for _ in range(2):  # the second revocation changes nothing, so it is not audited
            await directory.revoke_key("k1", audit=lambda k: event(f"key.revoke:{k.id}"))
        assert await directory.revoke_key("k9", audit=lambda k: event("x")) is None
        events, _ = await audit.list_audit(target="alice", action=None, limit=10, offset=0)
        assert [e.action for e in events] == ["key.revoke:k1", "key.create:k1", "user.create:alice"]

    contract.run(scenario)


def test_audit_events_filter_by_target_and_action_newest_first(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        audit = books.ledger.audit
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
            await audit.record_audit(event)
        everything, more = await audit.list_audit(target=None, action=None, limit=10, offset=0)
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
        assert added.id is not None
        assert added.created_at == events[1].created_at
        assert everything[0].details == {}
        assert everything[3].details is None
        alice, _ = await audit.list_audit(target="alice", action=None, limit=10, offset=0)
        assert [e.action for e in alice] == ["key.revoke", "credits.add", "user.create"]
        credits, _ = await audit.list_audit(target=None, action="credits.add", limit=10, offset=0)
        assert [e.target for e in credits] == ["bob", "alice"]
        both, _ = await audit.list_audit(target="bob", action="credits.add", limit=10, offset=0)
        assert [e.amount for e in both] == [USD]
        page, more = await audit.list_audit(target="alice", action=None, limit=2, offset=1)
        assert [e.action for e in page] == ["credits.add", "user.create"]
        assert not more
        page, more = await audit.list_audit(target=None, action=None, limit=2, offset=0)
        assert len(page) == 2
        assert more

    contract.run(scenario)


def test_key_and_user_settings_round_trip_and_change(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        await books.user("alice")
        limits = Limits(budget=5 * USD, period="month", tz="Europe/Paris", rpm=60, max_concurrent=2)
        until = datetime(2030, 1, 1, tzinfo=UTC)
        created = await books.directory.create_key(
            "alice",
            key_id="k1",
            key_hash="h1",
            prefix="gw-aaa",
            name="ci",
            expires_at=until,
            limits=limits,
            models=("gpt-4o*", "chat"),
            metadata={"team": "a", "n": 1},
        )
        found = await books.directory.get_key("k1")
        assert found == created
        assert (found.limits, found.models, found.metadata, found.expires_at) == (
            limits,
            ("gpt-4o*", "chat"),
            {"team": "a", "n": 1},
            until,
        )
        changed = await books.directory.update_key(
            "k1", {"limits": Limits(tpm=1000), "models": None, "bogus": 1}
        )
        assert changed is not None
        assert (changed.limits, changed.models, changed.name) == (Limits(tpm=1000), None, "ci")
        assert await books.directory.update_key("nope", {"name": "x"}) is None
        user = await books.directory.update_user(
            "alice", {"disabled": True, "limits": Limits(rpm=5), "models": ("chat",)}
        )
        assert user is not None
        assert (user.disabled, user.limits, user.models) == (True, Limits(rpm=5), ("chat",))
        key, owner = await books.directory.find_key("h1") or (None, None)
        assert key == changed
        assert owner is not None
        assert (owner.disabled, owner.limits, owner.models) == (True, Limits(rpm=5), ("chat",))
        assert await books.directory.update_user("nobody", {"disabled": True}) is None

    contract.run(scenario)


def test_rotation_copies_the_settings_and_brings_the_old_expiry_forward(
    contract: Contract,
) -> None:
    async def scenario(books: Books) -> None:
        await books.user("alice")
        await books.directory.create_key(
            "alice", key_id="k1", key_hash="h1", prefix="p", name="ci", limits=Limits(rpm=3)
        )
        grace = datetime(2031, 1, 1, tzinfo=UTC)
        rotated = await books.directory.rotate_key(
            "k1", new_id="k2", key_hash="h2", prefix="q", old_expires_at=grace
        )
        assert rotated is not None
        old, new = rotated
        assert (old.rotated_to, old.expires_at) == ("k2", grace)
        assert (new.user_id, new.name, new.limits, new.expires_at) == (
            "alice",
            "ci",
            Limits(rpm=3),
            None,
        )
        # A later grace never pushes an earlier expiry back.
        again = await books.directory.rotate_key(
            "k1",
            new_id="k3",
            key_hash="h3",
            prefix="r",
            old_expires_at=datetime(2040, 1, 1, tzinfo=UTC),
        )
        assert again is not None
        assert again[0].expires_at == grace
        await books.directory.revoke_key("k2")
        assert (
            await books.directory.rotate_key(
                "k2", new_id="k4", key_hash="h4", prefix="s", old_expires_at=grace
            )
            is None
        )

    contract.run(scenario)


def test_period_spend_sums_usage_by_key_or_user_since_a_time(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        await books.user("alice", credit=10 * USD)
        early, late = datetime(2024, 5, 1, tzinfo=UTC), datetime(2024, 6, 1, tzinfo=UTC)
        await books.journal.write_usage(
            [usage("r1", "alice", 100, at=early), usage("r2", "alice", 30, at=late)]
        )
        spend = books.ledger.reports.spend_since
        assert await spend(scope="k:key_1", since=late) == 30
        assert await spend(scope="u:alice", since=early) == 130
        assert await spend(scope="k:other", since=early) == 0

    contract.run(scenario)
