"""The durable ledger: users, keys, ledger entries, usage records (SQLite or PostgreSQL)."""

from __future__ import annotations

from gateway.ledger.base import Ledger


async def open_ledger(database_url: str) -> Ledger:
    """The ledger named by ``database_url``, migrated and ready."""
    if database_url.startswith("sqlite:///"):
        from gateway.ledger.sqlite import SqliteLedger

        ledger: Ledger = SqliteLedger(database_url.removeprefix("sqlite:///"))
    else:
        from gateway.ledger.postgres import PostgresLedger

        ledger = PostgresLedger(database_url)
    await ledger.open()
    return ledger
