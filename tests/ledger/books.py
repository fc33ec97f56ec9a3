"""The ledger contract's harness: a ledger on each database, the books-balance check every
scenario ends with, and a way to make calls really overlap on PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from gateway.ledger import open_ledger
from gateway.ledger.base import Ledger
from gateway.ledger.database import Statements
from gateway.ledger.postgres import PostgresDatabase
from gateway.records import UsageRecord, User

T0 = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
USD = 1_000_000_000


class Books:
    """The ledger under test and the users a scenario created (for the invariant check)."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.directory = ledger.directory
        self.journal = ledger.journal
        self.user_ids: list[str] = []

    async def user(self, user_id: str, *, credit: int = 0, email: str | None = None) -> User:
        user = await self.directory.create_user(user_id=user_id, email=email)
        self.user_ids.append(user_id)
        if credit:
            await self.journal.post_entry(
                user_id, kind="grant", amount=credit, reference=f"grant:{user_id}"
            )
        return user

    async def balance(self, user_id: str) -> int:
        found = await self.journal.balance(user_id)
        assert found is not None
        return found[0]

    async def version(self, user_id: str) -> int:
        found = await self.journal.balance(user_id)
        assert found is not None
        return found[1]


Scenario = Callable[[Books], Awaitable[None]]


async def assert_books_balance(books: Books) -> None:
    """For each user: balance == sum of entries, each balance_after is the running sum, each
    entry's version is its position (users.version grows by one per entry) and the user's
    version is the last entry's."""
    for user_id in books.user_ids:
        entries = await books.journal.list_entries(user_id)
        found = await books.journal.balance(user_id)
        assert found is not None, user_id
        balance, version = found
        assert balance == sum(e.amount for e in entries), user_id
        running = 0
        for position, entry in enumerate(entries, start=1):
            running += entry.amount
            assert entry.balance_after == running, entry
            assert entry.version == position, entry
        assert version == len(entries), user_id


class Contract:
    def __init__(self, kind: str, url: str) -> None:
        self.kind = kind
        self.url = url

    def run(self, scenario: Scenario) -> None:
        async def main() -> None:
            ledger = await open_ledger(self.url)
            try:
                books = Books(ledger)
                await scenario(books)
                await assert_books_balance(books)
            finally:
                await ledger.close()

        asyncio.run(main())


def usage(request_id: str, user_id: str, cost: int, at: datetime = T0) -> UsageRecord:
    return UsageRecord(
        request_id=request_id,
        user_id=user_id,
        key_id="key_1",
        model="gpt-4o",
        provider="openai",
        endpoint="/v1/chat/completions",
        prompt_tokens=120,
        completion_tokens=30,
        cached_tokens=0,
        reasoning_tokens=0,
        price_input=2_500_000_000,
        price_cached_input=None,
        price_output=10_000_000_000,
        cost=cost,
        status="ok",
        usage_source="upstream",
        latency_ms=42,
        created_at=at,
    )


async def contended(
    ledger: Ledger, user_ids: Sequence[str], calls: Sequence[Coroutine[Any, Any, Any]]
) -> list[Any]:
    """Runs ``calls`` concurrently; on PostgreSQL, all are made to queue on the users' row locks
    first (from their own pool connections), so they really overlap instead of taking turns."""
    if not isinstance(ledger.database, PostgresDatabase):
        return list(await asyncio.gather(*calls))
    async with ledger.database.transaction() as tx:
        await tx.execute(
            "SELECT 1 FROM users WHERE id = ANY($1) ORDER BY id FOR UPDATE", list(user_ids)
        )
        tasks = [asyncio.create_task(c) for c in calls]
        await until_lock_waiters(tx, len(tasks), tasks)
    return list(await asyncio.gather(*tasks))


async def until_lock_waiters(
    tx: Statements, count: int, tasks: Sequence[asyncio.Task[Any]], limit: float = 20.0
) -> None:
    deadline = time.monotonic() + limit
    while not any(t.done() for t in tasks):
        # pg_locks, not pg_stat_activity: the latter is a snapshot frozen for the length of
        # our transaction.
        row = await tx.fetchrow("SELECT count(DISTINCT pid) AS n FROM pg_locks WHERE NOT granted")
        assert row is not None
        if row["n"] >= count:
            return
        assert time.monotonic() < deadline, f"only {row['n']} of {count} calls reached the lock"
        await asyncio.sleep(0.01)


def aware_utc(value: datetime) -> bool:
    return value.utcoffset() == timedelta(0)
