"""The BalanceStore contract, run against every implementation (MemoryStore, RedisStore).

Interleavings are forced with a fake ledger whose next load can be held between its read and
its use; waits for expiry are functional (sleep past the ttl), never timing assertions.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.errors import Unavailable
from gateway.ledger.base import UnknownUser
from gateway.metering.layout import Layout
from gateway.metering.redis_store import RedisStore, connect
from gateway.metering.store import BalanceStore, MemoryStore
from gateway.records import UsageRecord
from tests.support.records import usage_record
from tests.support.servers import RedisServer
from tests.support.waiting import until

UID = "alice"


class FakeLedger:
    """(balance, version) per user; ``hold_next_load`` parks the next load after its read."""

    def __init__(self, **balances: int) -> None:
        self.users = {uid: (bal, 1) for uid, bal in balances.items()}
        self._hold: tuple[asyncio.Event, asyncio.Event] | None = None

    def commit(self, user_id: str, delta: int) -> int:
        balance, version = self.users[user_id]
        self.users[user_id] = (balance + delta, version + 1)
        return version + 1

    def hold_next_load(self) -> tuple[asyncio.Event, asyncio.Event]:
        read, resume = asyncio.Event(), asyncio.Event()
        self._hold = (read, resume)
        return read, resume

    async def load(self, user_id: str) -> tuple[int, int] | None:
        value = self.users.get(user_id)
        if self._hold is not None:
            (read, resume), self._hold = self._hold, None
            read.set()
            await resume.wait()
        return value


@dataclass
class Harness:
    store: BalanceStore
    settled: Callable[[], Awaitable[int]]  # records handed to the outbox / stream


Factory = Callable[[FakeLedger], contextlib.AbstractAsyncContextManager[Harness]]


def memory_factory(ledger: FakeLedger) -> contextlib.AbstractAsyncContextManager[Harness]:
    @contextlib.asynccontextmanager
    async def make() -> AsyncIterator[Harness]:
        store = MemoryStore(ledger.load)

        async def settled() -> int:
            return len(store.outbox)

        yield Harness(store, settled)
        await store.close()

    return make()


def redis_factory(url: str, layout: Layout | None = None) -> Factory:
    @contextlib.asynccontextmanager
    async def make(ledger: FakeLedger) -> AsyncIterator[Harness]:
        redis = connect(url)
        store = RedisStore(redis, ledger.load, layout=layout)
        await store.open()

        async def settled() -> int:
            return sum([int(await redis.xlen(stream)) for stream in store.streams])

        try:
            yield Harness(store, settled)
        finally:
            await store.close()
            await redis.aclose()

    return make


# A Redis Cluster (3 masters + 3 replicas) in a sharded layout: the cluster refuses any
# script whose keys span two slots.
CLUSTER_LAYOUT = Layout(shards=4, tagged=True)


@pytest.fixture(params=["memory", "redis", "cluster"])
def stores(request: pytest.FixtureRequest) -> Factory:
    if request.param == "memory":
        return memory_factory
    if request.param == "cluster":
        return redis_factory(request.getfixturevalue("cluster_url"), CLUSTER_LAYOUT)
    return redis_factory(request.getfixturevalue("redis_url"))


async def credit(store: BalanceStore, user_id: str, delta: int, version: int) -> None:
    await store.credit(user_id, delta, version=version)


def record(request_id: str, cost: int, user_id: str = UID) -> UsageRecord:
    return usage_record(request_id, user_id, cost)


# -- the contract --------------------------------------------------------------------------


def test_concurrent_admits_never_over_reserve(stores: Factory) -> None:
    async def main() -> None:
        async with stores(FakeLedger(alice=1000)) as h:
            results = await asyncio.gather(
                *(h.store.admit(UID, f"r{i}", 7, ttl=60) for i in range(200))
            )
            assert sum(a.ok for a in results) == 1000 // 7
            assert await h.store.snapshot(UID) == (1000, 1000 // 7 * 7)

    asyncio.run(main())


def test_refusal_says_what_is_available(stores: Factory) -> None:
    async def main() -> None:
        async with stores(FakeLedger(alice=1000)) as h:
            assert (await h.store.admit(UID, "r1", 300, ttl=60)).ok
            refused = await h.store.admit(UID, "r2", 701, ttl=60)
            assert (refused.ok, refused.available, refused.balance) == (False, 700, 1000)

    asyncio.run(main())


def test_readmitting_a_live_hold_replaces_it(stores: Factory) -> None:
    # How a stream's hold grows: its own hold counts as available, never twice as reserved.
    async def main() -> None:
        async with stores(FakeLedger(alice=1000)) as h:
            assert (await h.store.admit(UID, "stream", 300, ttl=60)).ok
            assert (await h.store.admit(UID, "other", 200, ttl=60)).ok
            grown = await h.store.admit(UID, "stream", 800, ttl=60)
            assert (grown.ok, grown.available) == (True, 800)
            assert await h.store.snapshot(UID) == (1000, 1000)
            refused = await h.store.admit(UID, "stream", 801, ttl=60)
            assert (refused.ok, refused.available) == (False, 800)
            assert await h.store.snapshot(UID) == (1000, 1000)  # a refusal keeps the old hold
            assert await h.store.settle(record("stream", 650)) == 350
            assert await h.store.snapshot(UID) == (350, 200)

    asyncio.run(main())


def test_concurrent_growth_of_holds_never_over_reserves(stores: Factory) -> None:
    async def main() -> None:
        async with stores(FakeLedger(alice=1000)) as h:
            for i in range(10):
                assert (await h.store.admit(UID, f"s{i}", 10, ttl=60)).ok
            # every stream asks to grow by 90 at once, ten times: 1000 can hold ten growths
            grown = await asyncio.gather(
                *(
                    h.store.admit(UID, f"s{i}", 10 + 90 * step, ttl=60)
                    for step in range(1, 11)
                    for i in range(10)
                )
            )
            _, reserved = await h.store.snapshot(UID) or (0, 0)
            assert reserved <= 1000
            assert sum(a.ok for a in grown) >= 10

    asyncio.run(main())


def test_a_hold_that_expired_can_be_admitted_again(stores: Factory) -> None:
    async def main() -> None:
        async with stores(FakeLedger(alice=1000)) as h:
            assert (await h.store.admit(UID, "stream", 300, ttl=0.2)).ok
            await asyncio.sleep(0.3)
            assert (await h.store.admit(UID, "stream", 900, ttl=60)).ok
            assert await h.store.snapshot(UID) == (1000, 900)

    asyncio.run(main())


def test_unknown_user_is_refused(stores: Factory) -> None:
    async def main() -> None:
        async with stores(FakeLedger()) as h:
            with pytest.raises(UnknownUser):
                await h.store.admit("nobody", "r1", 1, ttl=60)
            assert await h.store.snapshot("nobody") is None

    asyncio.run(main())


def test_settle_is_idempotent(stores: Factory) -> None:
    async def main() -> None:
        async with stores(FakeLedger(alice=1000)) as h:
            await h.store.admit(UID, "r1", 100, ttl=60)
            assert await h.store.settle(record("r1", 40)) == 960
            assert await h.store.settle(record("r1", 40)) is None
            assert await h.store.snapshot(UID) == (960, 0)
            assert await h.settled() == 1

    asyncio.run(main())


def test_settle_loads_a_balance_it_has_not_seen(stores: Factory) -> None:
    async def main() -> None:
        async with stores(FakeLedger(alice=1000)) as h:
            assert await h.store.settle(record("r1", 40)) == 960
            assert await h.settled() == 1

    asyncio.run(main())


def test_settle_after_expiry_still_bills(stores: Factory) -> None:
    async def main() -> None:
        async with stores(FakeLedger(alice=1000)) as h:
            await h.store.admit(UID, "r1", 100, ttl=0.2)
            await asyncio.sleep(0.3)
            assert await h.store.settle(record("r1", 40)) == 960
            assert await h.store.snapshot(UID) == (960, 0)
            assert await h.settled() == 1

    asyncio.run(main())


def test_reservations_expire(stores: Factory) -> None:
    async def main() -> None:
        async with stores(FakeLedger(alice=1000)) as h:
            assert (await h.store.admit(UID, "r1", 600, ttl=0.2)).ok
            assert not (await h.store.admit(UID, "r2", 600, ttl=60)).ok
            await asyncio.sleep(0.3)
            assert await h.store.snapshot(UID) == (1000, 0)
            assert (await h.store.admit(UID, "r2", 600, ttl=60)).ok

    asyncio.run(main())


def test_credit_reaches_a_loaded_balance(stores: Factory) -> None:
    async def main() -> None:
        ledger = FakeLedger(alice=1000)
        async with stores(ledger) as h:
            await h.store.snapshot(UID)
            version = ledger.commit(UID, 500)
            await credit(h.store, UID, 500, version)
            assert await h.store.snapshot(UID) == (1500, 0)
            await credit(h.store, UID, 500, version)  # a replay (same version) moves nothing
            assert await h.store.snapshot(UID) == (1500, 0)

    asyncio.run(main())


def test_credit_to_an_unloaded_balance_is_counted_once(stores: Factory) -> None:
    async def main() -> None:
        ledger = FakeLedger(alice=1000)
        async with stores(ledger) as h:
            version = ledger.commit(UID, 500)
            await credit(h.store, UID, 500, version)
            assert await h.store.snapshot(UID) == (1500, 0)

    asyncio.run(main())


def test_stale_load_cannot_overwrite_a_newer_balance(stores: Factory) -> None:
    async def main() -> None:
        ledger = FakeLedger(alice=1000)
        async with stores(ledger) as h:
            read, resume = ledger.hold_next_load()
            slow = asyncio.create_task(h.store.snapshot(UID))  # reads 1000, then waits
            await read.wait()
            assert await h.store.settle(record("r1", 300)) == 700  # loads 1000 itself
            resume.set()
            assert await slow == (700, 0)
            assert await h.store.snapshot(UID) == (700, 0)

    asyncio.run(main())


def test_stale_load_cannot_lose_a_credit(stores: Factory) -> None:
    async def main() -> None:
        ledger = FakeLedger(alice=1000)
        async with stores(ledger) as h:
            read, resume = ledger.hold_next_load()
            slow = asyncio.create_task(h.store.snapshot(UID))  # reads (1000, v1), waits
            await read.wait()
            version = ledger.commit(UID, 500)  # committed after that read ...
            await credit(h.store, UID, 500, version)  # ... reported before its use
            resume.set()
            await slow
            assert await h.store.snapshot(UID) == (1500, 0)

    asyncio.run(main())


def test_credit_already_in_the_loaded_balance_is_not_applied_twice(stores: Factory) -> None:
    async def main() -> None:
        ledger = FakeLedger(alice=1000)
        async with stores(ledger) as h:
            version = ledger.commit(UID, 500)
            await h.store.snapshot(UID)  # loads 1500 at the new version, before the credit
            await credit(h.store, UID, 500, version)
            assert await h.store.snapshot(UID) == (1500, 0)

    asyncio.run(main())


# -- RedisStore only: Redis unreachable ----------------------------------------------------


def _dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


def test_admit_answers_unavailable_when_redis_is_down() -> None:
    async def main() -> None:
        redis = connect(_dead_url())
        store = RedisStore(redis, FakeLedger(alice=1000).load)
        await store.open()
        with pytest.raises(Unavailable, match="metering store unavailable"):
            await store.admit(UID, "r1", 1, ttl=60)
        await store.close()
        await redis.aclose()

    asyncio.run(main())


def test_settlement_while_redis_is_down_lands_when_it_is_back(
    redis_srv: RedisServer, tmp_path: Path
) -> None:
    async def main() -> None:
        ledger = FakeLedger(alice=1000)
        redis = connect(redis_srv.url)
        store = RedisStore(redis, ledger.load, spill_dir=tmp_path)
        await store.open()
        await store.admit(UID, "r1", 100, ttl=60)
        redis_srv.stop()
        assert await store.settle(record("r1", 40)) is None
        await store.credit(UID, 500, version=ledger.commit(UID, 500))
        assert store.backlog == 2
        assert _spilled(tmp_path) == 2  # journaled before anything else can go wrong
        redis_srv.start()
        await _drained(store)
        assert await store.snapshot(UID) == (1460, 0)
        assert await redis.xlen(store.stream) == 1
        assert _spilled(tmp_path) == 0
        await store.close()
        await redis.aclose()
        assert _files(tmp_path) == []

    asyncio.run(main())


def test_spilled_settlements_are_replayed_at_start(redis_url: str, tmp_path: Path) -> None:
    async def main() -> None:
        ledger = FakeLedger(alice=1000)
        down = connect(_dead_url())
        first = RedisStore(down, ledger.load, spill_dir=tmp_path)
        await first.open()
        assert await first.settle(record("r1", 40)) is None
        assert await first.settle(record("r2", 60)) is None
        # Already in what the next load reads: replaying it must not count it twice.
        await first.credit(UID, 500, version=ledger.commit(UID, 500))
        await first.close()  # cannot reach Redis: spills
        await down.aclose()
        assert _spilled(tmp_path) == 3

        redis = connect(redis_url)
        second = RedisStore(redis, ledger.load, spill_dir=tmp_path)
        await second.open()
        await _drained(second)
        assert await second.snapshot(UID) == (1400, 0)
        assert await redis.xlen(second.stream) == 2
        await second.close()
        await redis.aclose()
        assert _files(tmp_path) == []

    asyncio.run(main())


def test_a_live_process_spill_file_is_not_adopted(redis_url: str, tmp_path: Path) -> None:
    async def main() -> None:
        ledger = FakeLedger(alice=1000)
        down = connect(_dead_url())
        live = RedisStore(down, ledger.load, spill_dir=tmp_path)
        await live.open()
        await live.settle(record("r1", 40))
        redis = connect(redis_url)
        other = RedisStore(redis, ledger.load, spill_dir=tmp_path)
        await other.open()
        assert other.backlog == 0
        assert live.backlog == 1
        await other.close()
        await live.close()
        await asyncio.gather(redis.aclose(), down.aclose())

    asyncio.run(main())


def _files(folder: Path) -> list[Path]:
    return list(folder.iterdir())


def _spilled(folder: Path) -> int:
    return sum(len(p.read_bytes().splitlines()) for p in folder.glob("*.jsonl"))


async def _drained(store: RedisStore) -> None:
    await until(
        lambda: store.backlog, lambda n: n == 0, wanted="the spilled backlog sent (0)", within=15
    )
