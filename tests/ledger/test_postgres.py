"""What only PostgreSQL can get wrong: raw driver errors and lock order across processes."""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
import pytest

from gateway.ledger import open_ledger
from tests.ledger.books import USD, Books, assert_books_balance, until_lock_waiters, usage

pytestmark = pytest.mark.production


def test_postgres_ledger_translates_only_its_own_constraints(pg_dsn: str) -> None:
    async def main() -> None:
        ledger = await open_ledger(pg_dsn)
        try:
            directory = ledger.directory
            await directory.create_user(user_id="alice", email=None)
            await directory.create_key("alice", key_id="k1", key_hash="h1", prefix="p", name=None)
            with pytest.raises(asyncpg.UniqueViolationError):
                await directory.create_key(
                    "alice", key_id="k2", key_hash="h1", prefix="p", name=None
                )
        finally:
            await ledger.close()

    asyncio.run(main())


class Rollback(Exception):
    pass


def test_postgres_reversed_overlapping_batches_do_not_deadlock(pg_dsn: str) -> None:
    # An uncommitted row r2 makes both batches stop halfway through their inserts; a writer
    # taking keys in batch order would then hold r1 and want r3 while the other holds r3
    # and wants r1.
    async def main() -> None:
        ledger = await open_ledger(pg_dsn)
        try:
            books = Books(ledger)
            for name in ("u1", "u2", "u3"):
                await books.user(name, credit=USD)
            batch = [usage(f"r{i}", f"u{i}", 10 * i) for i in (1, 2, 3)]
            with contextlib.suppress(Rollback):
                async with ledger.database.transaction() as tx:
                    await tx.execute(
                        "INSERT INTO usage_records (request_id, user_id, model, provider,"
                        " endpoint, prompt_tokens, completion_tokens, cached_tokens,"
                        " reasoning_tokens, price_input, price_output, cost, status,"
                        " usage_source, latency_ms, created_at) VALUES ('r2', 'u2', 'm', 'p',"
                        " 'e', 0, 0, 0, 0, 0, 0, 0, 'ok', 'upstream', 0, now())"
                    )
                    tasks = [
                        asyncio.create_task(books.journal.write_usage(b))
                        for b in (batch, batch[::-1])
                    ]
                    await until_lock_waiters(tx, 2, tasks)
                    raise Rollback  # the blocking row goes; both batches proceed
            done = await asyncio.gather(*tasks)
            assert sorted(rid for ids in done for rid in ids) == ["r1", "r2", "r3"]
            for i in (1, 2, 3):
                assert await books.balance(f"u{i}") == USD - 10 * i
            await assert_books_balance(books)
        finally:
            await ledger.close()

    asyncio.run(main())
