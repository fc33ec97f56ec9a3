"""Schema migrations: applied once, 0004 backfills entry versions on existing books, and rows
written before 0006 read back without a deployment, before 0008 without attribution."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import replace

import asyncpg
import pytest

from gateway.ledger import open_ledger
from gateway.ledger.schema import migrations
from gateway.ledger.sql import USAGE_FIELDS
from tests.ledger.books import Books, Contract, assert_books_balance, usage

# Books written before migration 0004, entries of two users interleaved, each user's version
# the number of their entries (the invariant 0004 relies on).
USERS = [("alice", 60, 3), ("bob", 15, 2)]
ENTRIES = [
    ("alice", "grant", 100, 100, "grant:alice"),
    ("bob", "grant", 20, 20, "grant:bob"),
    ("alice", "usage", -30, 70, "usage:r1"),
    ("bob", "usage", -5, 15, "usage:r2"),
    ("alice", "usage", -10, 60, "usage:r3"),
]


def books_at_version_3_on_sqlite(path: str) -> None:
    conn = sqlite3.connect(path)
    try:
        conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY)")
        for version, sql in migrations("sqlite")[:3]:
            conn.executescript(sql)
            conn.execute("INSERT INTO schema_migrations VALUES (?)", (version,))
        at = "2024-05-01 12:00:00.000000"
        conn.executemany(
            "INSERT INTO users (id, balance, version, created_at) VALUES (?, ?, ?, ?)",
            [(*user, at) for user in USERS],
        )
        conn.executemany(
            "INSERT INTO ledger_entries (user_id, kind, amount, balance_after, reference,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?)",
            [(*entry, at) for entry in ENTRIES],
        )
        conn.commit()
    finally:
        conn.close()


async def books_at_version_3_on_postgres(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "CREATE TABLE schema_migrations ("
            "version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for version, sql in migrations("postgres")[:3]:
            await conn.execute(sql)
            await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
        await conn.executemany(
            "INSERT INTO users (id, balance, version) VALUES ($1, $2, $3)", USERS
        )
        await conn.executemany(
            "INSERT INTO ledger_entries (user_id, kind, amount, balance_after, reference)"
            " VALUES ($1, $2, $3, $4, $5)",
            ENTRIES,
        )
    finally:
        await conn.close()


def test_entry_versions_are_backfilled_as_positions_per_user(contract: Contract) -> None:
    async def main() -> None:
        if contract.kind == "sqlite":
            books_at_version_3_on_sqlite(contract.url.removeprefix("sqlite:///"))
        else:
            await books_at_version_3_on_postgres(contract.url)
        ledger = await open_ledger(contract.url)  # applies 0004
        try:
            books = Books(ledger)
            books.user_ids += ["alice", "bob"]
            alice = await books.journal.list_entries("alice")
            assert [(e.reference, e.version) for e in alice] == [
                ("grant:alice", 1),
                ("usage:r1", 2),
                ("usage:r3", 3),
            ]
            assert [e.version for e in await books.journal.list_entries("bob")] == [1, 2]
            later = await books.journal.post_entry("bob", kind="grant", amount=1, reference="g")
            assert later.version == 3
            await books.journal.write_usage([])
            await assert_books_balance(books)
        finally:
            await ledger.close()

    asyncio.run(main())


@pytest.mark.production
def test_postgres_ledgers_starting_together_migrate_once(pg_dsn: str) -> None:
    async def main() -> None:
        ledgers = await asyncio.gather(*(open_ledger(pg_dsn) for _ in range(4)))
        try:
            await ledgers[0].close()
            await ledgers[0].open()  # reopening an up-to-date database changes nothing
            versions = await ledgers[0].database.fetch(
                "SELECT version FROM schema_migrations ORDER BY version"
            )
            assert [r["version"] for r in versions] == [v for v, _ in migrations("postgres")]
        finally:
            for ledger in ledgers:
                await ledger.close()

    asyncio.run(main())


async def a_usage_row_at_version_5(contract: Contract) -> None:
    """A database migrated to 0005 holding one usage row (written without a deployment)."""
    await a_usage_row_at(contract, 5, first_missing="deployment")


async def a_usage_row_at(contract: Contract, upto: int, *, first_missing: str) -> None:
    """A database migrated up to version ``upto`` holding one usage row, written with the
    columns of ``UsageRecord`` that come before ``first_missing``."""
    before = list(USAGE_FIELDS[: USAGE_FIELDS.index(first_missing)])
    row = usage("r1", "alice", 100)
    values = [getattr(row, f) for f in before]
    if contract.kind == "sqlite":
        conn = sqlite3.connect(contract.url.removeprefix("sqlite:///"))
        try:
            conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY)")
            for version, sql in migrations("sqlite")[:upto]:
                conn.executescript(sql)
                conn.execute("INSERT INTO schema_migrations VALUES (?)", (version,))
            conn.execute(
                "INSERT INTO users (id, balance, version, created_at) VALUES"
                " ('alice', 0, 0, '2024-05-01 12:00:00.000000')"
            )
            conn.execute(
                f"INSERT INTO usage_records ({', '.join(before)})"
                f" VALUES ({', '.join('?' for _ in before)})",
                [
                    v.strftime("%Y-%m-%d %H:%M:%S.%f") if f == "created_at" else v
                    for f, v in zip(before, values, strict=True)
                ],
            )
            conn.commit()
        finally:
            conn.close()
        return
    conn = await asyncpg.connect(contract.url)
    try:
        await conn.execute(
            "CREATE TABLE schema_migrations ("
            "version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for version, sql in migrations("postgres")[:upto]:
            await conn.execute(sql)
            await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
        await conn.execute("INSERT INTO users (id, balance, version) VALUES ('alice', 0, 0)")
        await conn.execute(
            f"INSERT INTO usage_records ({', '.join(before)})"
            f" VALUES ({', '.join(f'${i}' for i in range(1, len(before) + 1))})",
            *values,
        )
    finally:
        await conn.close()


def test_usage_rows_from_before_0006_read_back_without_a_deployment(contract: Contract) -> None:
    async def main() -> None:
        await a_usage_row_at_version_5(contract)
        ledger = await open_ledger(contract.url)  # applies 0006
        try:
            rows, _ = await ledger.reports.list_usage("alice", limit=10, offset=0)
            assert [(r.request_id, r.provider, r.deployment) for r in rows] == [
                ("r1", "openai", None)
            ]
            assert rows[0] == replace(usage("r1", "alice", 100), created_at=rows[0].created_at)
        finally:
            await ledger.close()

    asyncio.run(main())


def test_0009_adds_an_empty_alert_outbox_to_existing_books(contract: Contract) -> None:
    async def main() -> None:
        dialect = "sqlite" if contract.kind == "sqlite" else "postgres"
        before = [(v, sql) for v, sql in migrations(dialect) if v < 9]
        if contract.kind == "sqlite":
            conn = sqlite3.connect(contract.url.removeprefix("sqlite:///"))
            try:
                conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY)")
                for version, sql in before:
                    conn.executescript(sql)
                    conn.execute("INSERT INTO schema_migrations VALUES (?)", (version,))
                conn.commit()
            finally:
                conn.close()
        else:
            pg = await asyncpg.connect(contract.url)
            try:
                await pg.execute(
                    "CREATE TABLE schema_migrations ("
                    "version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
                )
                for version, sql in before:
                    await pg.execute(sql)
                    await pg.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
            finally:
                await pg.close()
        ledger = await open_ledger(contract.url)  # applies 0009
        try:
            assert await ledger.webhooks.list_deliveries(
                status=None, type=None, before=None, limit=5
            ) == ([], False)
            applied = await ledger.database.fetch("SELECT version FROM schema_migrations")
            assert 9 in {r["version"] for r in applied}
        finally:
            await ledger.close()

    asyncio.run(main())


def test_usage_rows_from_before_0008_read_back_without_attribution(contract: Contract) -> None:
    async def main() -> None:
        await a_usage_row_at(contract, 6, first_missing="end_user")
        ledger = await open_ledger(contract.url)  # applies 0008 (and any migration between)
        try:
            rows, _ = await ledger.reports.list_usage("alice", limit=10, offset=0)
            assert [(r.end_user, r.tags, r.session_id) for r in rows] == [(None, (), None)]
            assert rows[0] == replace(usage("r1", "alice", 100), created_at=rows[0].created_at)
            tagged = replace(
                usage("r2", "alice", 50), end_user="u-9", tags=("a", "b:c"), session_id="s1"
            )
            assert await ledger.journal.write_usage([tagged]) == ["r2"]
            rows, _ = await ledger.reports.list_usage("alice", limit=10, offset=0)
            assert {r.request_id: r for r in rows}["r2"] == replace(
                tagged, created_at={r.request_id: r for r in rows}["r2"].created_at
            )
        finally:
            await ledger.close()

    asyncio.run(main())


def test_keys_and_users_from_before_0007_read_back_without_settings(contract: Contract) -> None:
    async def main() -> None:
        await a_usage_row_at_version_5(contract)  # alice, at 0005
        ledger = await open_ledger(contract.url)  # applies 0006 and 0007
        try:
            user = await ledger.directory.get_user("alice")
            assert user is not None
            assert (user.disabled, user.limits, user.models) == (False, None, None)
            key = await ledger.directory.create_key(
                "alice", key_id="k", key_hash="h", prefix="p", name=None
            )
            assert (key.limits, key.models, key.metadata, key.rotated_to) == (None,) * 4
        finally:
            await ledger.close()

    asyncio.run(main())
