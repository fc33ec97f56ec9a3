"""Usage storage at scale, on every database: the rollups equal the rows they sum, one record
per request id across months (PostgreSQL's partitions), months added on demand, the
retention dropping old months (never entries, never rollups), and migration 0013 of books
written before it."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from gateway.ledger import open_ledger
from gateway.ledger.base import Ledger
from gateway.ledger.partitions import shift
from gateway.ledger.postgres import PostgresDatabase
from gateway.ledger.rollups import KEY, MEASURES, deltas
from gateway.ledger.schema import migrations
from gateway.ledger.sql import USAGE_FIELDS, usage_values
from gateway.ledger.sqlite import adapt
from gateway.ledger.sqlite_time import parse_ts
from gateway.records import UsageRecord, utcnow
from gateway.report_records import Period
from gateway.services import build, shutdown
from gateway.settings import Settings, SettingsError
from gateway.usage_retention import UsageRetention, horizon
from tests.ledger.books import USD, Books, Contract, contended, usage

JAN = datetime(2025, 1, 15, 10, 30, tzinfo=UTC)


def varied(n: int, rng: random.Random, start: datetime, days: int) -> UsageRecord:
    """A record with every attribute the rollups group by, spread over ``days``."""
    at = start + timedelta(seconds=rng.random() * days * 86400)
    base = usage(f"req_{n:05d}", rng.choice(["alice", "bob"]), rng.choice([0, 7, 1000]), at)
    return replace(
        base,
        key_id=rng.choice(["k1", "k2", None]),
        model=rng.choice(["m1", "m2"]),
        provider=rng.choice(["p1", "p2"]),
        prompt_tokens=rng.randint(0, 900),
        completion_tokens=rng.randint(0, 300),
        cached_tokens=rng.randint(0, 50),
        reasoning_tokens=rng.randint(0, 20),
        end_user=rng.choice(["e1", "e2", None]),
        session_id=rng.choice(["s1", None]),
        tags=tuple(rng.sample(["a", "b", "c"], rng.randint(0, 2))),
    )


async def stored_rollups(ledger: Ledger) -> list[tuple[Any, ...]]:
    rows = await ledger.database.fetch(
        f"SELECT {', '.join(KEY + MEASURES)} FROM usage_rollups ORDER BY {', '.join(KEY)}"
    )
    return [tuple(r[c] for c in KEY + MEASURES) for r in rows]


async def usage_count(ledger: Ledger) -> int:
    row = await ledger.database.fetchrow("SELECT count(*) AS n FROM usage_records")
    assert row is not None
    return int(row["n"])


def test_rollups_equal_the_sums_of_the_rows_written_once(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        await books.user("alice", credit=USD)
        await books.user("bob", credit=USD)
        rng = random.Random(3)
        records = [varied(n, rng, JAN, 70) for n in range(300)]
        # Batches overlap and repeat: each record counts once, whatever arrives twice.
        for i in range(0, 300, 40):
            await books.journal.write_usage(records[i : i + 60])
        await books.journal.write_usage(rng.sample(records, 50))
        await contended(
            books.ledger,
            ["alice", "bob"],
            [books.journal.write_usage(records[100:200]) for _ in range(3)],
        )
        assert await stored_rollups(books.ledger) == deltas(records)
        assert await usage_count(books.ledger) == 300

    contract.run(scenario)


def test_a_request_recorded_in_one_month_is_not_recorded_again_in_another(
    contract: Contract,
) -> None:
    async def scenario(books: Books) -> None:
        await books.user("alice", credit=USD)
        first = usage("r1", "alice", 100, JAN)
        free = usage("r2", "alice", 0, JAN)
        assert await books.journal.write_usage([first, free]) == ["r1", "r2"]
        # The same request ids, settled again a month later (another partition on PostgreSQL).
        later = [replace(first, created_at=JAN + timedelta(days=40)), replace(free, cost=0)]
        later[1] = replace(later[1], created_at=JAN + timedelta(days=40))
        assert await books.journal.write_usage(later) == []
        both = await contended(
            books.ledger,
            ["alice"],
            [
                books.journal.write_usage([usage("r3", "alice", 5, JAN + timedelta(days=1))]),
                books.journal.write_usage([usage("r3", "alice", 5, JAN + timedelta(days=50))]),
            ],
        )
        assert sorted(map(len, both)) == [0, 1]
        assert await usage_count(books.ledger) == 3
        assert await books.balance("alice") == USD - 105
        assert await stored_rollups(books.ledger) == deltas([first, free, *_r3(both)])

    contract.run(scenario)


def _r3(both: list[list[str]]) -> list[UsageRecord]:
    # Which of the two r3 won is up to the race; its month decides the buckets.
    return [usage("r3", "alice", 5, JAN + timedelta(days=1 if both[0] else 50))]


def test_a_record_of_any_month_finds_its_partition(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        await books.user("alice", credit=USD)
        old = usage("old", "alice", 10, datetime(2019, 2, 3, tzinfo=UTC))
        ahead = usage("ahead", "alice", 10, datetime(2031, 7, 1, tzinfo=UTC))
        assert await books.journal.write_usage([old, ahead]) == ["old", "ahead"]
        db = books.ledger.database
        if isinstance(db, PostgresDatabase):
            # Another process's retention drops a month this writer has seen: it adds it again.
            await db.execute("DROP TABLE usage_records_2019_02")
        again = usage("again", "alice", 10, datetime(2019, 2, 4, tzinfo=UTC))
        assert await books.journal.write_usage([again]) == ["again"]
        if isinstance(db, PostgresDatabase):
            names = {r["n"] for r in await db.fetch("SELECT relname AS n FROM pg_class")}
            assert {"usage_records_2019_02", "usage_records_2031_07"} <= names
        assert await books.balance("alice") == USD - 30

    contract.run(scenario)


def test_retention_drops_old_months_of_usage_but_no_entry_and_no_rollup(
    contract: Contract,
) -> None:
    async def scenario(books: Books) -> None:
        await books.user("alice", credit=USD)
        months = [datetime(2025, m, 10, tzinfo=UTC) for m in (1, 2, 3, 4)]
        records = [usage(f"r{m}", "alice", 100 * (m + 1), at) for m, at in enumerate(months)]
        records.append(usage("free", "alice", 0, months[0]))
        await books.journal.write_usage(records)
        rollups = await stored_rollups(books.ledger)
        entries = await books.journal.list_entries("alice")
        retention = UsageRetention(books.ledger.usage_storage, 2, audit=books.ledger.audit)
        now = datetime(2025, 4, 20, tzinfo=UTC)
        assert horizon(now, 2) == datetime(2025, 2, 1, tzinfo=UTC)
        assert await retention.run_once(now) == ["2025-01"]
        assert await retention.run_once(now) == []  # idempotent
        # The drop left a trace; the pass that dropped nothing did not.
        events, _ = await books.ledger.audit.list_audit(
            target=None, action="usage.prune", limit=10, offset=0
        )
        assert [(e.actor, e.details) for e in events] == [
            (
                "retention",
                {
                    "keep_months": 2,
                    "first_kept": "2025-02-01T00:00:00+00:00",
                    "months": ["2025-01"],
                },
            )
        ]
        rows, _ = await books.ledger.reports.list_usage("alice", limit=10, offset=0)
        assert sorted(r.request_id for r in rows) == ["r1", "r2", "r3"]
        assert await books.journal.list_entries("alice") == entries
        assert await stored_rollups(books.ledger) == rollups
        # Whole days of a dropped month are still reported, from the rollups.
        totals, _ = await books.ledger.reports.usage_totals(
            user_id="alice",
            period=Period(datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 2, 1, tzinfo=UTC)),
        )
        assert (totals.requests, totals.cost) == (2, 100)
        # A charged record replayed after its row was dropped is not debited again.
        assert await books.journal.write_usage([records[0]]) == []
        assert await books.balance("alice") == USD - 1000

    contract.run(scenario)


def test_retention_is_off_by_default_and_adds_months_ahead(contract: Contract) -> None:
    async def scenario(books: Books) -> None:
        await books.user("alice", credit=USD)
        await books.journal.write_usage([usage("r1", "alice", 1, JAN)])
        retention = UsageRetention(books.ledger.usage_storage, None)
        assert await retention.run_once(datetime(2040, 12, 31, 23, tzinfo=UTC)) == []
        assert await usage_count(books.ledger) == 1
        db = books.ledger.database
        if isinstance(db, PostgresDatabase):
            names = {r["n"] for r in await db.fetch("SELECT relname AS n FROM pg_class")}
            assert {"usage_records_2040_12", "usage_records_2041_01"} <= names

    contract.run(scenario)


# -- migration 0013 --------------------------------------------------------------------------


async def books_at_version_12(contract: Contract, records: list[UsageRecord]) -> None:
    columns = ", ".join(USAGE_FIELDS)
    if contract.kind == "sqlite":
        conn = sqlite3.connect(contract.url.removeprefix("sqlite:///"))
        try:
            conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY)")
            for version, sql in migrations("sqlite"):
                if version < 13:
                    conn.executescript(sql)
                    conn.execute("INSERT INTO schema_migrations VALUES (?)", (version,))
            for user in ("alice", "bob"):
                conn.execute(
                    "INSERT INTO users (id, balance, version, created_at)"
                    " VALUES (?, 0, 0, '2024-05-01 12:00:00.000000')",
                    (user,),
                )
            conn.executemany(
                f"INSERT INTO usage_records ({columns})"
                f" VALUES ({', '.join('?' * len(USAGE_FIELDS))})",
                [adapt(usage_values(r)) for r in records],
            )
            conn.commit()
        finally:
            conn.close()
        return
    pg = await asyncpg.connect(contract.url)
    try:
        await pg.execute(
            "CREATE TABLE schema_migrations ("
            "version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for version, sql in migrations("postgres"):
            if version < 13:
                await pg.execute(sql)
                await pg.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
        await pg.execute("INSERT INTO users (id) VALUES ('alice'), ('bob')")
        await pg.copy_records_to_table(
            "usage_records",
            records=[tuple(usage_values(r)) for r in records],
            columns=list(USAGE_FIELDS),
        )
    finally:
        await pg.close()


def test_0013_moves_existing_usage_into_months_and_rollups(contract: Contract) -> None:
    async def main() -> None:
        rng = random.Random(5)
        records = [varied(n, rng, JAN, 100) for n in range(250)]
        await books_at_version_12(contract, records)
        ledger = await open_ledger(contract.url)  # applies 0013
        try:
            rollups = await stored_rollups(ledger)
            if contract.kind == "sqlite":  # bucket_at read back as a datetime (database.py)
                assert all(isinstance(r[2], datetime) for r in rollups)
            assert rollups == deltas(records)
            found: list[UsageRecord] = []
            for user in ("alice", "bob"):
                rows, _ = await ledger.reports.list_usage(user, limit=1000, offset=0)
                found += rows
            assert sorted(found, key=lambda r: r.request_id) == records
            if contract.kind != "sqlite":
                parts = await ledger.database.fetch(
                    "SELECT c.relname AS n FROM pg_inherits i JOIN pg_class c"
                    " ON c.oid = i.inhrelid WHERE i.inhparent = 'usage_records'::regclass"
                )
                months = {r.created_at.strftime("usage_records_%Y_%m") for r in records}
                assert months <= {r["n"] for r in parts}
            # New records land beside the migrated ones, in the same rollups.
            more = [varied(n, rng, JAN, 100) for n in range(250, 300)]
            assert len(await ledger.journal.write_usage(more)) == 50
            assert await stored_rollups(ledger) == deltas(records + more)
        finally:
            await ledger.close()

    asyncio.run(main())


def test_sqlite_bucket_text_is_the_timestamp_format() -> None:
    # The SQLite migration cuts the stored text; the writer formats datetimes: same buckets.
    at = datetime(2025, 3, 4, 5, 6, 7, 890, tzinfo=UTC)
    assert parse_ts(adapt([at])[0][:13] + ":00:00.000000") == at.replace(
        minute=0, second=0, microsecond=0
    )


# -- the setting and the gateway's start ------------------------------------------------------


def test_the_retention_setting_is_a_number_of_months() -> None:
    assert Settings.from_env({}).usage_retention_months is None
    assert Settings.from_env({"GATEWAY_USAGE_RETENTION_MONTHS": "0"}).usage_retention_months is None
    assert Settings.from_env({"GATEWAY_USAGE_RETENTION_MONTHS": "13"}).usage_retention_months == 13
    for bad in ("-1", "a year"):
        with pytest.raises(SettingsError, match="GATEWAY_USAGE_RETENTION_MONTHS"):
            Settings.from_env({"GATEWAY_USAGE_RETENTION_MONTHS": bad})


def test_a_gateway_starting_drops_the_months_past_its_retention(
    contract: Contract, tmp_path: Path
) -> None:
    async def main() -> None:
        ledger = await open_ledger(contract.url)
        now = utcnow()
        try:
            await ledger.directory.create_user(user_id="alice", email=None)
            await ledger.journal.post_entry("alice", kind="grant", amount=USD, reference="g")
            old = usage("old", "alice", 100, shift(now, -3))
            kept = usage("kept", "alice", 100, shift(now, -1))
            await ledger.journal.write_usage([old, kept])
        finally:
            await ledger.close()
        services = await build(gateway_settings(contract, tmp_path, usage_retention_months="2"))
        try:
            rows, _ = await services.ledger.reports.list_usage("alice", limit=10, offset=0)
            assert [r.request_id for r in rows] == ["kept"]
            assert await services.ledger.journal.balance("alice") == (USD - 200, 3)
        finally:
            await shutdown(services)

    asyncio.run(main())


def gateway_settings(contract: Contract, tmp_path: Path, **env: str) -> Settings:
    """A gateway's settings on ``contract``'s database (a one-model catalog in ``tmp_path``);
    ``env``: more GATEWAY_* values by lowercase name without the prefix."""
    models = tmp_path / "models.yaml"
    models.write_text(MODELS)
    return Settings.from_env(
        {
            "GATEWAY_DATABASE_URL": contract.url,
            "GATEWAY_MODELS": str(models),
            "GATEWAY_SPILL_DIR": str(tmp_path / "spill"),
            **{f"GATEWAY_{k.upper()}": v for k, v in env.items()},
        }
    )


MODELS = """\
providers:
  p: {base_url: http://127.0.0.1:9/v1}
models:
  chat:
    provider: p
    price: {input: "1.00", output: "1.00"}
    max_output_tokens: 10
"""
