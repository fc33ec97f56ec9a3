"""The Redis Stream usage outbox against real Redis and a real ledger (SQLite, PostgreSQL).

Every test ends with the same check: the ledger holds each request exactly once and its
balance equals the one Redis computed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from pathlib import Path

import orjson
from redis.asyncio import Redis

from gateway.ledger import open_ledger
from gateway.ledger.base import Ledger
from gateway.metering.codec import decode_record, encode_record
from gateway.metering.modes import open_metering
from gateway.metering.redis_store import RedisStore, connect
from gateway.metering.stream_writer import StreamWriter
from gateway.metrics import Metrics
from gateway.records import UsageRecord
from gateway.settings import Settings
from tests.support.records import usage_record
from tests.support.servers import RedisServer
from tests.support.waiting import until

UID = "alice"
CREDIT = 1_000_000


@contextlib.asynccontextmanager
async def ledger_at(url: str) -> AsyncIterator[Ledger]:
    ledger = await open_ledger(url)
    try:
        with contextlib.suppress(Exception):
            await ledger.directory.create_user(user_id=UID, email=None)
            await ledger.journal.post_entry(
                UID, kind="grant", amount=CREDIT, reference="grant:alice"
            )
        yield ledger
    finally:
        await ledger.close()


class FlakyLedger:
    """A ledger whose database is 'down' while ``down`` is set (writes and pings fail)."""

    def __init__(self, inner: Ledger) -> None:
        self.inner = inner
        self.down = True
        self.failures = 0
        self.journal = self  # the writer reaches write_usage through ``ledger.journal``

    async def write_usage(self, records: Sequence[UsageRecord]) -> list[str]:
        if self.down:
            self.failures += 1
            raise ConnectionError("database is down")
        return await self.inner.journal.write_usage(records)

    async def ping(self) -> None:
        if self.down:
            raise ConnectionError("database is down")


def record(i: int, cost: int = 7, user_id: str = UID) -> UsageRecord:
    return usage_record(
        f"req-{i}",
        user_id,
        cost,
        key_id=None,
        prompt_tokens=i,
        completion_tokens=1,
        usage_source="counted",
        latency_ms=1,
    )


async def settle_many(store: RedisStore, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        assert await store.settle(record(i)) is not None


async def until_written(writer: StreamWriter, count: int) -> None:
    await until(
        lambda: writer.written,
        lambda written: written >= count,
        wanted=f"{count} records written to the ledger",
        within=20,
    )


async def landed_once(ledger: Ledger, store: RedisStore, n: int) -> None:
    """Each request once in the ledger, and the ledger balance equals Redis's."""
    rows, more = await ledger.reports.list_usage(UID, limit=10 * n + 10, offset=0)
    ids = [r.request_id for r in rows]
    assert not more
    assert len(ids) == len(set(ids)) == n
    balance = await ledger.journal.balance(UID)
    snapshot = await store.snapshot(UID)
    assert balance is not None
    assert snapshot is not None
    assert balance[0] == snapshot[0] == CREDIT - 7 * n


def writer_for(redis: Redis, ledger: object, **options: object) -> StreamWriter:
    options = {"batch": 50, "block_ms": 100, "claim_interval": 0.05, **options}
    return StreamWriter(redis, ledger, stream="gw:usage", **options)  # type: ignore[arg-type]


def test_codec_round_trips_a_record() -> None:
    original = record(1)
    assert decode_record(encode_record(original)) == original
    routed = replace(original, deployment="azure/gpt-4o")
    assert decode_record(encode_record(routed)) == routed


def test_codec_reads_a_record_written_before_deployments_were_recorded() -> None:
    line = orjson.loads(encode_record(record(1)))
    del line["deployment"]  # a spill file or stream entry of an older release
    assert decode_record(orjson.dumps(line)).deployment is None


def test_batches_land_exactly_once(redis_url: str, database_url: str) -> None:
    async def main() -> None:
        async with ledger_at(database_url) as ledger:
            redis = connect(redis_url)
            store = RedisStore(redis, ledger.journal.balance)
            await store.open()
            writer = writer_for(redis, ledger)
            await writer.start()
            await settle_many(store, 120)
            assert await store.settle(record(5)) is None  # a replayed settlement
            # A duplicate delivery of the stream itself must not bill twice either.
            await redis.xadd(store.stream, {"r": encode_record(record(6))})
            await until_written(writer, 121)
            await writer.stop()
            assert writer.backlog == 0
            await landed_once(ledger, store, 120)
            await store.close()
            await redis.aclose()

    asyncio.run(main())


def test_entries_of_a_consumer_killed_before_ack_are_written_once(
    redis_url: str, database_url: str
) -> None:
    async def main() -> None:
        async with ledger_at(database_url) as ledger:
            redis = connect(redis_url)
            store = RedisStore(redis, ledger.journal.balance)
            await store.open()
            dead = writer_for(redis, ledger, consumer="dead")
            await dead.ensure_group()
            await settle_many(store, 60)
            # The dead consumer read everything, committed half of it, and died before acking.
            reply = await redis.xreadgroup("gw-writers", "dead", {store.stream: ">"}, count=100)
            entries = next(iter(reply.values())) if isinstance(reply, dict) else reply[0][1]
            assert len(entries) == 60
            await ledger.journal.write_usage([decode_record(f[b"r"]) for _, f in entries[:30]])

            survivor = writer_for(redis, ledger, consumer="survivor", claim_idle_ms=50)
            await survivor.start()
            await until_written(survivor, 60)
            await survivor.stop()
            assert (await redis.xpending(store.stream, "gw-writers"))["pending"] == 0
            await landed_once(ledger, store, 60)
            await store.close()
            await redis.aclose()

    asyncio.run(main())


def test_ledger_down_keeps_entries_pending_then_lands_them(
    redis_url: str, database_url: str
) -> None:
    async def main() -> None:
        async with ledger_at(database_url) as real:
            flaky = FlakyLedger(real)
            redis = connect(redis_url)
            store = RedisStore(redis, real.journal.balance)
            await store.open()
            writer = writer_for(redis, flaky)
            await writer.start()
            await settle_many(store, 80)
            await until(
                lambda: flaky.failures, lambda n: n >= 3, wanted="3 failed writes", within=20
            )
            assert writer.last_error is not None
            assert await redis.xlen(store.stream) == 80  # nothing acknowledged, nothing lost
            assert (await real.reports.list_usage(UID, limit=1, offset=0))[0] == []
            flaky.down = False
            await until_written(writer, 80)
            await writer.stop()
            assert writer.backlog == 0
            assert writer.last_error is None
            await landed_once(real, store, 80)
            await store.close()
            await redis.aclose()

    asyncio.run(main())


def test_a_poison_record_is_set_aside_and_the_rest_lands(redis_url: str, tmp_path: Path) -> None:
    async def main() -> None:
        async with ledger_at(f"sqlite:///{tmp_path / 'ledger.db'}") as ledger:
            redis = connect(redis_url)
            store = RedisStore(redis, ledger.journal.balance)
            await store.open()
            await settle_many(store, 10)
            # A record the ledger will always refuse (no such user) in the middle of a batch.
            poison = encode_record(record(99, user_id="ghost"))
            await redis.xadd(store.stream, {"r": poison})
            await settle_many(store, 10, start=10)
            writer = writer_for(redis, ledger, strikes=2)
            await writer.start()
            await until(
                lambda: (writer.written, writer.backlog),
                lambda seen: seen[0] >= 20 and seen[1] == 0,
                wanted="20 records written and no backlog",
                show=lambda seen: f"{seen[0]} written, backlog {seen[1]}",
                within=20,
            )
            await writer.stop()
            dead = await redis.xrange(f"{store.stream}:dead")
            assert [fields[b"r"] for _, fields in dead] == [poison]
            await landed_once(ledger, store, 20)
            await store.close()
            await redis.aclose()

    asyncio.run(main())


def test_stop_drains_what_is_left(redis_url: str, database_url: str) -> None:
    async def main() -> None:
        async with ledger_at(database_url) as ledger:
            redis = connect(redis_url)
            store = RedisStore(redis, ledger.journal.balance)
            await store.open()
            writer = writer_for(redis, ledger, block_ms=1000, claim_interval=60.0)
            await writer.start()
            await asyncio.sleep(0.05)  # the writer is now blocked in XREADGROUP
            await settle_many(store, 40)
            await writer.stop()
            assert writer.backlog == 0
            await landed_once(ledger, store, 40)
            await store.close()
            await redis.aclose()

    asyncio.run(main())


def test_redis_restart_keeps_balances_and_pending_entries(
    redis_srv: RedisServer, tmp_path: Path
) -> None:
    async def main() -> None:
        async with ledger_at(f"sqlite:///{tmp_path / 'ledger.db'}") as ledger:
            redis = connect(redis_srv.url)
            store = RedisStore(redis, ledger.journal.balance)
            await store.open()
            await writer_for(redis, ledger).ensure_group()
            await settle_many(store, 30)
            await redis.xreadgroup("gw-writers", "dead", {store.stream: ">"}, count=10)
            await store.admit(UID, "open-call", 500, ttl=600)

            redis_srv.restart()  # AOF: balances, reservations, stream and group survive

            assert await store.snapshot(UID) == (CREDIT - 7 * 30, 500)
            assert (await redis.xpending(store.stream, "gw-writers"))["pending"] == 10
            assert await redis.xlen(store.stream) == 30
            writer = writer_for(redis, ledger, claim_idle_ms=50)
            await writer.start()
            await until_written(writer, 30)
            await writer.stop()
            await landed_once(ledger, store, 30)
            await store.close()
            await redis.aclose()

    asyncio.run(main())


def test_production_metering_is_wired_from_settings(redis_url: str, tmp_path: Path) -> None:
    async def main() -> None:
        url = f"sqlite:///{tmp_path / 'ledger.db'}"
        settings = Settings(
            database_url=url,
            redis_url=redis_url,
            spill_dir=tmp_path / "spill",
        )
        async with ledger_at(url) as ledger:
            metering = await open_metering(settings, ledger, Metrics())
            store = metering.store
            await metering.start()
            assert (await store.admit(UID, "req-0", 100, ttl=60)).ok
            assert await store.settle(record(0)) == CREDIT - 7
            await metering.stop()
            rows, _ = await ledger.reports.list_usage(UID, limit=10, offset=0)
            assert [r.request_id for r in rows] == ["req-0"]
            await store.close()

    asyncio.run(main())
