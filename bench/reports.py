#!/usr/bin/env python3
"""Time the operator reports over many usage rows (SQLite, and PostgreSQL when given).

    python bench/reports.py                      # 100,000 rows, SQLite
    python bench/reports.py --rows 1000000       # 1M rows
    python bench/reports.py --pg auto            # also a private PostgreSQL (tests/support)
    python bench/reports.py --pg postgresql://user@host/db   # an existing, empty database

Rows are seeded straight into ``usage_records`` (executemany / COPY) over 90 days, 1,000 users
(a few heavy spenders: the heaviest has about half the rows) and 12 models, then ANALYZEd
(PostgreSQL: VACUUM ANALYZE, as autovacuum would). Each report is timed through the very
functions the admin API and the CLI call (gateway/reports.py: SQL aggregation plus
Python formatting) ``--repeat`` times after one warm-up; the table shows the median and the
slowest. Nothing asserts a time: the numbers are for reading (the issue's bar: well under a
second at 100,000 rows).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gateway import reports  # noqa: E402
from gateway.ledger import open_ledger  # noqa: E402
from gateway.ledger.base import Ledger  # noqa: E402
from gateway.ledger.postgres import PostgresDatabase  # noqa: E402
from gateway.ledger.sql import USAGE_COLUMNS, USAGE_FIELDS, usage_values  # noqa: E402
from gateway.ledger.sqlite import SqliteDatabase, adapt, ts  # noqa: E402
from gateway.records import UsageRecord  # noqa: E402

NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)
DAYS = 90
USERS = 1000
MODELS = [(f"model-{i}", "openai" if i % 3 else "local") for i in range(12)]


def records(count: int, seed: int = 1) -> list[UsageRecord]:
    rng = random.Random(seed)
    span = DAYS * 86_400
    out = []
    for n in range(count):
        user = f"u{min(int(rng.paretovariate(1.2)) - 1, USERS - 1):04d}"
        model, provider = MODELS[rng.randrange(len(MODELS))]
        prompt, completion = rng.randint(10, 4000), rng.randint(0, 1500)
        cost = (prompt * 2_500_000_000 + completion * 10_000_000_000) // 1_000_000
        out.append(
            UsageRecord(
                request_id=f"req_{n:09d}",
                user_id=user,
                key_id="key",
                model=model,
                provider=provider,
                endpoint="chat/completions",
                prompt_tokens=prompt,
                completion_tokens=completion,
                cached_tokens=rng.randint(0, prompt // 4),
                reasoning_tokens=0,
                price_input=2_500_000_000,
                price_cached_input=None,
                price_output=10_000_000_000,
                cost=cost,
                status="ok",
                usage_source="upstream",
                latency_ms=rng.randint(50, 3000),
                created_at=NOW - timedelta(seconds=rng.random() * span),
            )
        )
    return out


async def seed_sqlite(ledger: Ledger, rows: list[UsageRecord]) -> None:
    db = ledger.database
    assert isinstance(db, SqliteDatabase)

    def run(c: Any) -> None:
        c.executemany(
            "INSERT INTO users (id, email, balance, version, created_at) VALUES (?, NULL, 0, 0, ?)",
            [(f"u{i:04d}", ts(NOW)) for i in range(USERS)],
        )
        c.executemany(
            f"INSERT INTO usage_records ({USAGE_COLUMNS})"
            f" VALUES ({', '.join('?' for _ in USAGE_FIELDS)})",
            [adapt(usage_values(r)) for r in rows],
        )

    await db.tx(run)
    await db.execute("ANALYZE")


async def seed_postgres(ledger: Ledger, rows: list[UsageRecord]) -> None:
    db = ledger.database
    assert isinstance(db, PostgresDatabase)
    async with db.connection() as conn:
        await conn.executemany(
            "INSERT INTO users (id) VALUES ($1)", [(f"u{i:04d}",) for i in range(USERS)]
        )
        await conn.copy_records_to_table(
            "usage_records",
            records=[tuple(usage_values(r)) for r in rows],
            columns=list(USAGE_FIELDS),
        )
        # What autovacuum does to an insert-only table soon enough (PostgreSQL 13+); the
        # visibility map it sets is what makes the covering indexes index-only.
        await conn.execute("VACUUM ANALYZE usage_records")


def cases(ledger: Ledger) -> list[tuple[str, Callable[[], Awaitable[Any]]]]:
    first_page: dict[str, Any] = {}

    async def page_one() -> Any:
        first_page.update(await reports.usage_page(ledger, "u0000", {"limit": "50"}))
        return first_page

    async def page_two() -> Any:
        return await reports.usage_page(
            ledger, "u0000", {"limit": "50", "cursor": first_page["next_cursor"]}
        )

    now = NOW.isoformat()
    return [
        ("revenue, 30 days, UTC", lambda: reports.revenue(ledger, {}, now=NOW)),
        (
            "revenue, 90 days, Europe/Paris",
            lambda: reports.revenue(
                ledger,
                {"from": (NOW - timedelta(days=DAYS)).date().isoformat(), "tz": "Europe/Paris"},
                now=NOW,
            ),
        ),
        ("models, all time", lambda: reports.models(ledger, {})),
        (
            "models, last 7 days",
            lambda: reports.models(
                ledger, {"from": (NOW - timedelta(days=7)).isoformat(), "to": now}
            ),
        ),
        ("top users (10), all time", lambda: reports.top_users(ledger, {})),
        (
            "top users (10), 30 days",
            lambda: reports.top_users(
                ledger, {"from": (NOW - timedelta(days=30)).isoformat(), "to": now}
            ),
        ),
        ("stats, heaviest user", lambda: reports.stats(ledger, "u0000", {})),
        ("stats, a light user", lambda: reports.stats(ledger, "u0500", {})),
        ("usage page 1 (50)", page_one),
        ("usage page 2 (cursor)", page_two),
    ]


async def measure(
    name: str,
    url: str,
    seed: Callable[[Ledger, list[UsageRecord]], Awaitable[None]],
    rows: list[UsageRecord],
    repeat: int,
) -> dict[str, tuple[float, float]]:
    ledger = await open_ledger(url)
    try:
        started = time.perf_counter()
        await seed(ledger, rows)
        print(
            f"{name}: seeded {len(rows):,} rows in {time.perf_counter() - started:.1f} s",
            file=sys.stderr,
        )
        out: dict[str, tuple[float, float]] = {}
        for label, run in cases(ledger):
            await run()  # warm-up: caches, prepared statements
            times = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                await run()
                times.append((time.perf_counter() - t0) * 1000)
            out[label] = (statistics.median(times), max(times))
        return out
    finally:
        await ledger.close()


def table(rows: int, results: dict[str, dict[str, tuple[float, float]]]) -> str:
    names = list(results)
    head = ["report"] + [f"{n} median / max (ms)" for n in names]
    labels = list(next(iter(results.values())))
    body = [
        [label] + [f"{results[n][label][0]:8.1f} / {results[n][label][1]:8.1f}" for n in names]
        for label in labels
    ]
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
    fmt = (
        "| " + " | ".join(f"{{:{'<' if i == 0 else '>'}{w}}}" for i, w in enumerate(widths)) + " |"
    )
    lines = [
        f"{rows:,} usage rows",
        fmt.format(*head),
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    return "\n".join(lines + [fmt.format(*r) for r in body])


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--pg", help="'auto' (private server) or the DSN of an empty database")
    args = parser.parse_args()

    rows = records(args.rows)
    results: dict[str, dict[str, tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["sqlite"] = await measure(
            "sqlite", f"sqlite:///{tmp}/bench.db", seed_sqlite, rows, args.repeat
        )
    if args.pg:
        server = None
        dsn = args.pg
        if args.pg == "auto":
            from tests.support.servers import PostgresServer

            server = PostgresServer()
            server.start()
            dsn = server.create_database(f"bench_{uuid.uuid4().hex[:8]}")
        try:
            results["postgres"] = await measure("postgres", dsn, seed_postgres, rows, args.repeat)
        finally:
            if server is not None:
                server.cleanup()
    print(table(args.rows, results))


if __name__ == "__main__":
    asyncio.run(main())
