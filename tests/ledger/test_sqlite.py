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
