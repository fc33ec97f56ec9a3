"""The Logins port (gateway/ledger/logins.py) on every database: accounts, invitations and
the log-in throttle's counters."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from gateway.ledger.base import DuplicateEmail, DuplicateUser, InviteRefused, UnknownUser
from gateway.records import AuditEvent, Login, utcnow
from tests.ledger.books import USD, Books, Contract, aware_utc


async def account(
    books: Books, user_id: str, email: str, *, invite_hash: str | None = None
) -> Login:
    _, login = await books.ledger.logins.create_account(
        user_id=user_id,
        email=email,
        email_key=email.casefold(),
        password_hash=f"hash-of-{user_id}",
        welcome_credit=2 * USD,
        invite_hash=invite_hash,
    )
    books.user_ids.append(user_id)
    return login


async def user_count(books: Books) -> int:
    row = await books.ledger.database.fetchrow("SELECT count(*) AS n FROM users")
    assert row is not None
    return int(row["n"])


def test_an_account_is_a_user_and_a_login_found_by_its_email_in_any_case(
    contract: Contract,
) -> None:
    async def scenario(books: Books) -> None:
        user, login = await books.ledger.logins.create_account(
            user_id="u1",
            email="Ada@Example.com",
            email_key="ada@example.com",
            password_hash="$argon2id$x",
            welcome_credit=2 * USD,
            audit=lambda lg: AuditEvent(actor="portal", action="user.signup", target=lg.user_id),
        )
        books.user_ids.append("u1")
        assert (user.id, user.email, user.balance) == ("u1", "Ada@Example.com", 0)
        assert (login.user_id, login.email, login.welcome_credit) == (
            "u1",
            "Ada@Example.com",
            2 * USD,
        )
        assert aware_utc(login.created_at)
        assert login.password_changed_at == login.created_at
        assert await books.ledger.logins.find_login("ada@example.com") == login
        assert await books.ledger.logins.get_login("u1") == login
        assert await books.ledger.logins.find_login("ada@example.org") is None
        stored = await books.directory.get_user("u1")
        assert stored is not None
        assert stored.email == "Ada@Example.com"
        events, _ = await books.ledger.audit.list_audit(
            target="u1", action="user.signup", limit=5, offset=0
        )
        assert [e.actor for e in events] == ["portal"]

    contract.run(scenario)


def test_a_taken_email_in_another_case_is_refused_and_leaves_no_user(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        await account(books, "u1", "ada@example.com")
        before = await user_count(books)
        with pytest.raises(DuplicateEmail):
            await books.ledger.logins.create_account(
                user_id="u2",
                email="ADA@example.com",
                email_key="ada@example.com",
                password_hash="h",
                welcome_credit=0,
            )
        assert await user_count(books) == before
        assert await books.directory.get_user("u2") is None
        with pytest.raises(DuplicateUser):
            await books.ledger.logins.create_account(
                user_id="u1",
                email="new@example.com",
                email_key="new@example.com",
                password_hash="h",
                welcome_credit=0,
            )
        assert await books.ledger.logins.find_login("new@example.com") is None

    contract.run(scenario)


def test_concurrent_sign_ups_with_one_email_make_one_account(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        attempts = [
            books.ledger.logins.create_account(
                user_id=f"racer{i}",
                email="race@example.com",
                email_key="race@example.com",
                password_hash="h",
                welcome_credit=0,
            )
            for i in range(5)
        ]
        results = await asyncio.gather(*attempts, return_exceptions=True)
        made = [r for r in results if not isinstance(r, BaseException)]
        assert len(made) == 1
        assert all(isinstance(r, DuplicateEmail) for r in results if r not in made)
        assert await user_count(books) == 1
        books.user_ids.append(made[0][0].id)

    contract.run(scenario)


def test_an_invitation_admits_one_account_then_is_refused(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        logins = books.ledger.logins
        invite = await logins.create_invite(
            invite_id="inv_1",
            token_hash="t1",
            email=None,
            email_key=None,
            created_by="admin",
            expires_at=None,
            audit=lambda i: AuditEvent(actor="admin", action="invite.create", target=i.id),
        )
        assert (invite.id, invite.used_at, invite.used_by) == ("inv_1", None, None)
        await account(books, "u1", "a@example.com", invite_hash="t1")
        before = await user_count(books)
        for token in ("t1", "unknown"):
            with pytest.raises(InviteRefused):
                await account(books, "u2", "b@example.com", invite_hash=token)
        assert await user_count(books) == before
        assert await logins.find_login("b@example.com") is None
        (used,), more = await logins.list_invites(limit=10, offset=0)
        assert (used.used_by, more) == ("u1", False)
        assert used.used_at is not None
        assert aware_utc(used.used_at)

    contract.run(scenario)


def test_an_invitation_expired_or_for_another_address_is_refused(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        logins = books.ledger.logins
        now = utcnow()
        await logins.create_invite(
            invite_id="old",
            token_hash="t-old",
            email=None,
            email_key=None,
            created_by="admin",
            expires_at=now - timedelta(seconds=1),
        )
        await logins.create_invite(
            invite_id="ada",
            token_hash="t-ada",
            email="Ada@example.com",
            email_key="ada@example.com",
            created_by="admin",
            expires_at=now + timedelta(days=1),
        )
        for token, email in (("t-old", "x@example.com"), ("t-ada", "eve@example.com")):
            with pytest.raises(InviteRefused):
                await account(books, "u9", email, invite_hash=token)
        await account(books, "ada", "ADA@example.com", invite_hash="t-ada")
        invites, _ = await logins.list_invites(limit=10, offset=0)
        assert {i.id: i.used_by for i in invites} == {"ada": "ada", "old": None}
        page, more = await logins.list_invites(limit=1, offset=0)
        assert len(page) == 1
        assert more

    contract.run(scenario)


def test_a_login_is_added_to_an_existing_user_once(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        logins = books.ledger.logins
        await books.user("demo", credit=10 * USD)
        login = await logins.add_login(
            "demo", email="demo@example.com", email_key="demo@example.com", password_hash="h"
        )
        assert (login.user_id, login.welcome_credit) == ("demo", 0)
        with pytest.raises(DuplicateEmail):  # the user has one
            await logins.add_login(
                "demo",
                email="other@example.com",
                email_key="other@example.com",
                password_hash="h",
            )
        await books.user("bob")
        with pytest.raises(DuplicateEmail):  # the address is taken
            await logins.add_login(
                "bob", email="Demo@Example.com", email_key="demo@example.com", password_hash="h"
            )
        with pytest.raises(UnknownUser):
            await logins.add_login(
                "nobody", email="n@example.com", email_key="n@example.com", password_hash="h"
            )
        assert await logins.get_login("bob") is None

    contract.run(scenario)


def test_set_password_replaces_only_the_hash_it_expects(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        logins = books.ledger.logins
        first = await account(books, "u1", "a@example.com")
        assert not await logins.set_password(
            "u1", password_hash="new", expected_hash="stale", changed=True
        )
        assert await logins.set_password(
            "u1", password_hash="rehashed", expected_hash=first.password_hash, changed=False
        )
        rehashed = await logins.get_login("u1")
        assert rehashed is not None
        assert rehashed.password_hash == "rehashed"
        assert rehashed.password_changed_at == first.password_changed_at
        assert await logins.set_password(
            "u1", password_hash="changed", expected_hash="rehashed", changed=True
        )
        changed = await logins.get_login("u1")
        assert changed is not None
        assert changed.password_hash == "changed"
        assert changed.password_changed_at > first.password_changed_at

    contract.run(scenario)


def test_failures_are_counted_in_their_window_and_locks_keep_the_later_end(
    contract: Contract,
) -> None:
    async def scenario(books: Books) -> None:
        logins = books.ledger.logins
        t0 = utcnow()
        minute = timedelta(minutes=1)
        assert await logins.count_failure("email:a", at=t0, since=t0 - minute) == 1
        assert await logins.count_failure("email:a", at=t0 + minute, since=t0) == 2
        assert await logins.count_failure("addr:1.2.3.4", at=t0, since=t0 - minute) == 1
        # The window moved past the first two: they are forgotten.
        assert await logins.count_failure("email:a", at=t0 + 5 * minute, since=t0 + 2 * minute) == 1
        assert await logins.lock_ends(["email:a", "addr:1.2.3.4"], now=t0) is None
        await logins.lock("email:a", until=t0 + 10 * minute)
        await logins.lock("email:a", until=t0 + 5 * minute)  # the later end is kept
        await logins.lock("addr:1.2.3.4", until=t0 + 3 * minute)
        assert await logins.lock_ends(["email:a", "addr:1.2.3.4"], now=t0) == t0 + 10 * minute
        assert await logins.lock_ends(["addr:1.2.3.4"], now=t0) == t0 + 3 * minute
        assert await logins.lock_ends(["addr:1.2.3.4"], now=t0 + 4 * minute) is None
        assert await logins.lock_ends([], now=t0) is None
        await logins.clear_failures("email:a")
        assert await logins.lock_ends(["email:a"], now=t0) is None
        assert await logins.count_failure("email:a", at=t0 + 6 * minute, since=t0) == 1

    contract.run(scenario)
