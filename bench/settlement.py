#!/usr/bin/env python3
"""Settlement throughput: usage rows/s from the Redis stream into PostgreSQL.

    python bench/settlement.py                 # 50,000 records, 1 writer
    python bench/settlement.py --rows 200000 --writers 2

Starts a private PostgreSQL and Redis (tests/support/servers.py), creates 1,000 users, puts
``--rows`` settled usage records on the stream exactly as the gateway's settle script does
(field ``r``, encoded by gateway.metering.codec.encode_record), then starts
``--writers`` StreamWriter consumers (the same class every gateway process runs) and times
until every row is in ``usage_records`` with its ledger entry. Prints rows/s; checks the
ledger invariant afterwards. Nothing is asserted about speed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gateway.ledger import open_ledger  # noqa: E402
from gateway.ledger.base import Ledger  # noqa: E402
from gateway.metering.codec import encode_record  # noqa: E402
from gateway.metering.redis_store import connect  # noqa: E402
from gateway.metering.stream_writer import StreamWriter  # noqa: E402
from gateway.records import UsageRecord  # noqa: E402
from tests.support.servers import PostgresServer, RedisServer  # noqa: E402

USERS = 1_000


def record(i: int) -> UsageRecord:
    return UsageRecord(
        request_id=f"req_{i:012d}{os.urandom(4).hex()}",
        user_id=f"u{i % USERS}",
        key_id="k",
        model="gpt-4o",
        provider="openai",
        endpoint="chat/completions",
        prompt_tokens=120,
        completion_tokens=80,
        cached_tokens=0,
        reasoning_tokens=0,
        price_input=2_500_000_000,
        price_cached_input=1_250_000_000,
        price_output=10_000_000_000,
        cost=1_100_000,
        status="ok",
        usage_source="upstream",
        latency_ms=300,
        created_at=datetime.now(UTC),
    )


async def count(ledger: Ledger, sql: str) -> int:
    row = await ledger.database.fetchrow(sql)
    assert row is not None
    return int(row["n"])


async def run(rows: int, writers: int, dsn: str, url: str) -> None:
    ledger = await open_ledger(dsn)
    for u in range(USERS):
        await ledger.directory.create_user(user_id=f"u{u}", email=None)
        await ledger.journal.post_entry(f"u{u}", kind="grant", amount=10**12, reference=f"g{u}")
    redis = connect(url)
    for start in range(0, rows, 1000):
        pipe = redis.pipeline(transaction=False)
        for i in range(start, min(start + 1000, rows)):
            pipe.xadd("gw:usage", {"r": encode_record(record(i))})
        await pipe.execute()
    consumers = [
        StreamWriter(connect(url, socket_timeout=10.0), ledger, stream="gw:usage", close_redis=True)
        for _ in range(writers)
    ]
    began = time.perf_counter()
    for writer in consumers:
        await writer.ensure_group()
        await writer.start()
    # Polling the database is the measurement: no event says "all rows are in".
    while await count(ledger, "SELECT count(*) AS n FROM usage_records") < rows:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - began
    for writer in consumers:
        await writer.stop()
    broken = await count(
        ledger,
        "SELECT count(*) AS n FROM users u WHERE balance <> "
        "(SELECT coalesce(sum(amount), 0) FROM ledger_entries e WHERE e.user_id = u.id)"
        " OR version <> (SELECT count(*) FROM ledger_entries e WHERE e.user_id = u.id)",
    )
    print(
        f"| {rows:,} rows | {writers} writer(s) | {elapsed:.2f} s | {rows / elapsed:,.0f} rows/s "
        f"| invariant {'ok' if broken == 0 else f'BROKEN for {broken} users'} |"
    )
    await redis.aclose()
    await ledger.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--writers", type=int, default=1)
    args = parser.parse_args()
    pg, redis = PostgresServer(), RedisServer(appendfsync="everysec")
    pg.start()
    redis.start()
    try:
        asyncio.run(run(args.rows, args.writers, pg.create_database("bench"), redis.url))
    finally:
        redis.cleanup()
        pg.cleanup()


if __name__ == "__main__":
    main()
