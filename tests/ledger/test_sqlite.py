"""What only the SQLite database can get wrong: its transactions share one connection."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from gateway.ledger import open_ledger
from gateway.records import utcnow


def test_a_transaction_cancelled_midway_rolls_back_and_frees_the_connection(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        ledger = await open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
        try:
            inside = asyncio.Event()

            async def abandoned() -> None:
                async with ledger.database.transaction() as tx:
                    await tx.execute(
                        "INSERT INTO users (id, balance, version, created_at)"
                        " VALUES ($1, 0, 0, $2)",
                        "ghost",
                        utcnow(),
                    )
                    inside.set()
                    await asyncio.Event().wait()  # until cancelled

            task = asyncio.create_task(abandoned())
            await inside.wait()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            assert await ledger.directory.get_user("ghost") is None
            # The next transaction finds none open on the shared connection.
            await ledger.directory.create_user(user_id="alice", email=None)
            entry = await ledger.journal.post_entry("alice", kind="grant", amount=5, reference="g1")
            assert (entry.balance_after, entry.version) == (5, 1)
        finally:
            await ledger.close()

    asyncio.run(main())


def test_a_usage_batch_costs_the_same_few_statements_whatever_its_size(tmp_path: Path) -> None:
    # Every statement step gives the GIL away and the writer thread must win it back from the
    # event loop: a statement per row starved settlement under load (gateway/ledger/
    # sqlite_usage.py). So the count of steps per batch must not grow with the batch.
    from tests.ledger.books import usage

    async def main() -> None:
        ledger = await open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
        try:
            conn = ledger.database._conn  # type: ignore[attr-defined]
            for user in ("alice", "bob"):
                await ledger.directory.create_user(user_id=user, email=None)
                await ledger.journal.post_entry(user, kind="grant", amount=10**9, reference=user)
            statements: list[str] = []
            conn.set_trace_callback(statements.append)
            counts = []
            for size in (2, 400):
                statements.clear()
                batch = [
                    usage(f"r{size}-{i}", ("alice", "bob")[i % 2], 7 + i % 3) for i in range(size)
                ]
                assert len(await ledger.journal.write_usage(batch)) == size
                counts.append(len(statements))
            conn.set_trace_callback(None)
            assert counts[0] == counts[1] <= 9, statements
            # And the books hold: 402 usage entries, balances and versions follow them.
            for user in ("alice", "bob"):
                entries = await ledger.journal.list_entries(user)
                balance, version = await ledger.journal.balance(user)
                assert balance == sum(e.amount for e in entries)
                assert version == len(entries) == 1 + 201
                assert [e.version for e in entries] == list(range(1, 203))
        finally:
            await ledger.close()

    asyncio.run(main())
