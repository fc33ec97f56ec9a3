"""Login links and the throttle's per-scope serialisation in the Logins port
(gateway/ledger/logins.py, migration 0015) on every database."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from gateway.ledger.base import DuplicateEmail, LinkRefused, UnknownUser
from gateway.ledger.postgres import PostgresDatabase
from gateway.records import AuditEvent, utcnow
from tests.ledger.books import USD, Books, Contract, aware_utc, until_lock_waiters

HOUR = timedelta(hours=1)


async def link(books: Books, user_id: str, token_hash: str, *, expires: timedelta = HOUR) -> None:
    await books.ledger.logins.create_login_link(
        link_id=f"lnk_{token_hash}",
        token_hash=token_hash,
        user_id=user_id,
        created_by="admin",
        expires_at=utcnow() + expires,
    )


def test_a_link_gives_an_existing_user_a_login_once(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        logins = books.ledger.logins
        await books.user("carol", credit=10 * USD, email="carol@example.com")
        made = await logins.create_login_link(
            link_id="lnk_1",
            token_hash="t1",
            user_id="carol",
            created_by="admin",
            expires_at=utcnow() + HOUR,
            audit=lambda lk: AuditEvent(actor="admin", action="login_link.create", target="carol"),
        )
        assert (made.user_id, made.used_at) == ("carol", None)
        assert aware_utc(made.expires_at)
        assert await logins.find_login_link("t1", now=utcnow()) == made
        assert await logins.find_login_link("t1", now=made.expires_at) is None
        login = await logins.use_login_link(
            "t1", email="Carol@example.com", email_key="carol@example.com", password_hash="h1"
        )
        assert (login.user_id, login.email, login.welcome_credit) == (
            "carol",
            "Carol@example.com",
            0,
        )
        assert await logins.find_login("carol@example.com") == login
        # Used: refused, and it changes nothing.
        assert await logins.find_login_link("t1", now=utcnow()) is None
        with pytest.raises(LinkRefused):
            await logins.use_login_link(
                "t1", email="x@example.com", email_key="x@example.com", password_hash="h2"
            )
        assert await logins.get_login("carol") == login
        with pytest.raises(LinkRefused):
            await logins.use_login_link(
                "unknown", email="x@example.com", email_key="x@example.com", password_hash="h"
            )
        with pytest.raises(UnknownUser):
            await link(books, "nobody", "t-nobody")
        assert await books.balance("carol") == 10 * USD
        events, _ = await books.ledger.audit.list_audit(
            target="carol", action="login_link.create", limit=5, offset=0
        )
        assert len(events) == 1

    contract.run(scenario)


def test_a_link_resets_a_login_keeping_what_sign_up_fixed(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        logins = books.ledger.logins
        _, first = await logins.create_account(
            user_id="u1",
            email="a@example.com",
            email_key="a@example.com",
            password_hash="old",
            welcome_credit=2 * USD,
        )
        books.user_ids.append("u1")
        await link(books, "u1", "t1")
        reset = await logins.use_login_link(
            "t1", email="a@example.com", email_key="a@example.com", password_hash="new"
        )
        assert reset.password_hash == "new"
        assert (reset.created_at, reset.welcome_credit) == (first.created_at, 2 * USD)
        assert reset.password_changed_at > first.password_changed_at
        # A new address through a second link; the old one no longer finds the login.
        await link(books, "u1", "t2")
        moved = await logins.use_login_link(
            "t2", email="A2@example.com", email_key="a2@example.com", password_hash="newer"
        )
        assert moved.email == "A2@example.com"
        assert await logins.find_login("a@example.com") is None

    contract.run(scenario)


def test_a_taken_email_leaves_the_link_unused_and_the_login_as_it_was(
    contract: Contract,
) -> None:
    async def scenario(books: Books) -> None:
        logins = books.ledger.logins
        await books.user("bob")
        await books.user("carol")
        await logins.add_login(
            "bob", email="bob@example.com", email_key="bob@example.com", password_hash="b"
        )
        await logins.add_login(
            "carol", email="carol@example.com", email_key="carol@example.com", password_hash="c"
        )
        before = await logins.get_login("carol")
        await link(books, "carol", "t1")
        with pytest.raises(DuplicateEmail):
            await logins.use_login_link(
                "t1", email="BOB@example.com", email_key="bob@example.com", password_hash="x"
            )
        assert await logins.get_login("carol") == before
        assert await logins.find_login_link("t1", now=utcnow()) is not None
        done = await logins.use_login_link(
            "t1", email="carol@example.com", email_key="carol@example.com", password_hash="x"
        )
        assert done.password_hash == "x"

    contract.run(scenario)


def test_a_new_link_ends_the_older_one_and_expired_links_are_refused(
    contract: Contract,
) -> None:
    async def scenario(books: Books) -> None:
        logins = books.ledger.logins
        await books.user("u1")
        await books.user("u2")
        await link(books, "u1", "old")
        await link(books, "u2", "other")
        await link(books, "u1", "new")
        assert await logins.find_login_link("old", now=utcnow()) is None
        assert await logins.find_login_link("other", now=utcnow()) is not None  # another user's
        with pytest.raises(LinkRefused):
            await logins.use_login_link(
                "old", email="u1@example.com", email_key="u1@example.com", password_hash="h"
            )
        await link(books, "u2", "stale", expires=-timedelta(seconds=1))
        with pytest.raises(LinkRefused):
            await logins.use_login_link(
                "stale", email="u2@example.com", email_key="u2@example.com", password_hash="h"
            )
        assert await logins.get_login("u2") is None
        await logins.use_login_link(
            "new", email="u1@example.com", email_key="u1@example.com", password_hash="h"
        )

    contract.run(scenario)


def test_concurrent_uses_of_one_link_set_the_login_once(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        logins = books.ledger.logins
        await books.user("u1")
        await link(books, "u1", "t1")
        results = await asyncio.gather(
            *(
                logins.use_login_link(
                    "t1",
                    email=f"u{i}@example.com",
                    email_key=f"u{i}@example.com",
                    password_hash="h",
                )
                for i in range(5)
            ),
            return_exceptions=True,
        )
        done = [r for r in results if not isinstance(r, BaseException)]
        assert len(done) == 1
        assert all(isinstance(r, LinkRefused) for r in results if r not in done)

    contract.run(scenario)


def test_failures_counted_at_once_in_one_scope_each_see_the_others(contract: Contract) -> None:
    """The sign-up limit rests on this: a burst cannot all read the same count."""

    async def scenario(books: Books) -> None:
        logins = books.ledger.logins
        now = utcnow()
        calls = 4
        database = books.ledger.database
        if isinstance(database, PostgresDatabase):
            # Hold the scope's lock: every count must queue behind it, then take turns.
            async with database.transaction() as tx:
                await tx.lock("throttle:signup:10.0.0.1")
                tasks = [
                    asyncio.create_task(
                        logins.count_failure("signup:10.0.0.1", at=now, since=now - HOUR)
                    )
                    for _ in range(calls)
                ]
                await until_lock_waiters(tx, calls, tasks)
                assert not any(t.done() for t in tasks)
            counts = await asyncio.gather(*tasks)
        else:
            counts = await asyncio.gather(
                *(
                    logins.count_failure("signup:10.0.0.1", at=now, since=now - HOUR)
                    for _ in range(calls)
                )
            )
        assert sorted(counts) == list(range(1, calls + 1))

    contract.run(scenario)
