"""The ``Sessions`` port on SQLite and PostgreSQL: stored by token hash, answered until they
expire, ended one at a time, all of a user's but one, or all the operator's; expired rows are
cleared."""

from __future__ import annotations

from datetime import timedelta

import pytest

from gateway.records import WebSession, utcnow
from tests.ledger.books import Books, Contract
from tests.support.fixtures import Database


@pytest.fixture
def contract(database: Database) -> Contract:
    return Contract(database.kind, database.url)


def session(token_hash: str, user_id: str | None, *, lifetime: float = 3600) -> WebSession:
    now = utcnow()
    return WebSession(
        token_hash=token_hash,
        user_id=user_id,
        csrf_token=f"csrf-{token_hash}",
        created_at=now,
        expires_at=now + timedelta(seconds=lifetime),
    )


def test_a_session_is_found_by_its_hash_until_it_ends(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        sessions = books.ledger.sessions
        await books.user("alice")
        stored = session("h1", "alice")
        await sessions.create_session(stored)
        await sessions.create_session(session("op", None))
        found = await sessions.get_session("h1")
        assert found == stored
        operator = await sessions.get_session("op")
        assert operator is not None
        assert operator.user_id is None
        assert operator.csrf_token == "csrf-op"
        assert await sessions.get_session("nope") is None
        assert await sessions.end_session("h1") is True
        assert await sessions.get_session("h1") is None
        assert await sessions.end_session("h1") is False

    contract.run(scenario)


def test_an_expired_session_is_not_answered_and_is_cleared_by_the_next_sign_in(
    contract: Contract,
) -> None:
    async def scenario(books: Books) -> None:
        sessions = books.ledger.sessions
        await books.user("alice")
        await sessions.create_session(session("old", "alice", lifetime=-1))
        assert await sessions.get_session("old") is None
        rows = await books.ledger.database.fetch("SELECT token_hash FROM web_sessions")
        assert [r["token_hash"] for r in rows] == ["old"]
        await sessions.create_session(session("new", "alice"))
        rows = await books.ledger.database.fetch("SELECT token_hash FROM web_sessions")
        assert [r["token_hash"] for r in rows] == ["new"]

    contract.run(scenario)


def test_ending_a_users_sessions_keeps_the_one_named_and_everyone_elses(
    contract: Contract,
) -> None:
    async def scenario(books: Books) -> None:
        sessions = books.ledger.sessions
        await books.user("alice")
        await books.user("bob")
        for token_hash, user_id in [("a1", "alice"), ("a2", "alice"), ("a3", "alice")]:
            await sessions.create_session(session(token_hash, user_id))
        await sessions.create_session(session("b1", "bob"))
        await sessions.create_session(session("op", None))
        assert await sessions.end_sessions_of("alice", except_token_hash="a2") == 2
        assert await sessions.get_session("a1") is None
        assert await sessions.get_session("a3") is None
        assert await sessions.get_session("a2") is not None
        assert await sessions.get_session("b1") is not None
        assert await sessions.get_session("op") is not None
        assert await sessions.end_sessions_of("alice") == 1
        assert await sessions.get_session("a2") is None

    contract.run(scenario)


def test_a_session_of_an_unknown_user_is_refused(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        with pytest.raises(Exception, match=r"(?i)foreign key"):
            await books.ledger.sessions.create_session(session("x", "ghost"))
        assert await books.ledger.sessions.get_session("x") is None

    contract.run(scenario)


def test_ending_the_operator_sessions_keeps_every_users(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        sessions = books.ledger.sessions
        await books.user("alice")
        await sessions.create_session(session("a1", "alice"))
        await sessions.create_session(session("op1", None))
        await sessions.create_session(session("op2", None))
        assert await sessions.end_operator_sessions() == 2
        assert await sessions.get_session("op1") is None
        assert await sessions.get_session("op2") is None
        assert await sessions.get_session("a1") is not None
        assert await sessions.end_operator_sessions() == 0

    contract.run(scenario)
