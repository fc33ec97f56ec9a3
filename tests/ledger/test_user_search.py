"""Directory.list_users on every database: newest first, search by id or email substring in any
case (LIKE's wildcards taken literally), pages by (created_at, id) that neither skip nor repeat
while users are created (tests/ledger/books.py)."""

from __future__ import annotations

from gateway.records import User
from tests.ledger.books import Books, Contract


async def all_pages(books: Books, query: str | None, limit: int) -> list[str]:
    seen: list[str] = []
    after = None
    n = 0
    while True:
        users, more = await books.directory.list_users(query=query, after=after, limit=limit)
        seen += [u.id for u in users]
        n += 1
        await books.user(f"late-{n}", email=f"late{n}@example.com")  # lands between pages
        if not more:
            return seen
        last: User = users[-1]
        after = (last.created_at, last.id)


def test_users_list_newest_first_and_page_stably(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        for i in range(7):
            await books.user(f"u{i}", email=f"person{i}@Example.COM")
        expected = [f"u{i}" for i in reversed(range(7))]
        first, more = await books.directory.list_users(query=None, after=None, limit=100)
        assert [u.id for u in first] == expected
        assert more is False
        assert await all_pages(books, "u", 3) == expected  # late-* users do not contain "u"

    contract.run(scenario)


def test_users_search_by_id_or_email_substring_in_any_case(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        await books.user("alice", email="Alice@Example.com")
        await books.user("bob", email="robert@corp.io")
        await books.user("carol_x", email=None)
        await books.user("carolx", email="c%x@corp.io")

        async def ids(query: str) -> set[str]:
            users, _ = await books.directory.list_users(query=query, after=None, limit=50)
            return {u.id for u in users}

        assert await ids("ALICE") == {"alice"}
        assert await ids("example.com") == {"alice"}
        assert await ids("corp") == {"bob", "carolx"}
        assert await ids("rob") == {"bob"}
        assert await ids("carol_") == {"carol_x"}  # _ is not a wildcard
        assert await ids("c%x") == {"carolx"}  # nor is %
        assert await ids("nobody") == set()

    contract.run(scenario)
