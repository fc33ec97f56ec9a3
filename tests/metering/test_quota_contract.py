"""The quota part of the BalanceStore contract (gateway/metering/quota.py), on MemoryStore and
RedisStore: budget, rpm, tpm and concurrency checked and counted in the one atomic admission,
released and corrected by settlement. Concurrency is forced with many admissions at once."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import pytest

from gateway.metering.quota import Quota
from gateway.metering.redis_store import RedisStore, connect
from gateway.metering.store import BalanceStore, MemoryStore
from tests.metering.test_store_contract import CLUSTER_LAYOUT, UID, FakeLedger
from tests.support.records import usage_record

KEY = Quota("k:k1")  # usage_record's key
USER = Quota(f"u:{UID}")
Factory = Callable[[dict[str, int]], contextlib.AbstractAsyncContextManager[BalanceStore]]


@pytest.fixture(params=["memory", "redis", "cluster"])
def stores(request: pytest.FixtureRequest) -> Factory:
    """A store over alice's 1,000,000 nano-USD whose ledger spend per scope (and period) is
    ``spent``."""

    @contextlib.asynccontextmanager
    async def make(spent: dict[str, int]) -> AsyncIterator[BalanceStore]:
        ledger = FakeLedger(alice=1_000_000)

        async def spend(q: Quota) -> int:
            # "scope@start": the spend of the period starting then; "scope": of any period.
            return spent.get(f"{q.scope}@{q.period_start}", spent.get(q.scope, 0))

        if request.param == "memory":
            yield MemoryStore(ledger.load, spend_loader=spend)
            return
        cluster = request.param == "cluster"
        redis = connect(request.getfixturevalue("cluster_url" if cluster else "redis_url"))
        layout = CLUSTER_LAYOUT if cluster else None
        store = RedisStore(redis, ledger.load, spend_loader=spend, layout=layout)
        await store.open()
        try:
            yield store
        finally:
            await store.close()
            await redis.aclose()

    return make


def limited(q: Quota, **limits: int) -> Quota:
    return Quota(q.scope, **limits)  # type: ignore[arg-type]


def test_concurrent_admits_never_pass_the_rpm(stores: Factory) -> None:
    async def main() -> None:
        async with stores({}) as store:
            q = (limited(KEY, rpm=7),)
            results = await asyncio.gather(
                *(store.admit(UID, f"r{i}", 1, ttl=60, quotas=q) for i in range(40))
            )
            assert sum(a.ok for a in results) == 7
            refusal = next(a.refused for a in results if not a.ok)
            assert refusal is not None
            assert (refusal.scope, refusal.limit) == ("k:k1", "rpm")
            assert refusal.retry_ms is not None
            assert 0 < refusal.retry_ms <= 60_000
            # Settling frees nothing: a request counts for its 60 s whatever happens.
            await store.settle(usage_record("r0", UID, 1))
            assert not (await store.admit(UID, "late", 1, ttl=60, quotas=q)).ok

    asyncio.run(main())


def test_the_budget_counts_reservations_then_spend(stores: Factory) -> None:
    async def main() -> None:
        async with stores({}) as store:
            q = (limited(KEY, budget=100),)
            results = await asyncio.gather(
                *(store.admit(UID, f"r{i}", 7, ttl=60, quotas=q) for i in range(30))
            )
            admitted = [f"r{i}" for i, a in enumerate(results) if a.ok]
            assert len(admitted) == 100 // 7
            refused = next(a for a in results if not a.ok).refused
            assert refused is not None
            assert refused.limit == "budget"
            assert refused.retry_ms is None
            for rid in admitted:  # each cost 3 of its 7: the rest is released
                await store.settle(usage_record(rid, UID, 3))
            usage = await store.quota_usage(UID, q[0])
            assert (usage.spent, usage.reserved, usage.in_flight) == (42, 0, 0)
            assert (await store.admit(UID, "fits", 58, ttl=60, quotas=q)).ok
            assert not (await store.admit(UID, "over", 1, ttl=60, quotas=q)).ok

    asyncio.run(main())


def test_the_period_spend_is_read_from_the_ledger_once_and_resets_with_the_period(
    stores: Factory,
) -> None:
    async def main() -> None:
        async with stores({"k:k1@86400": 90}) as store:
            day1 = Quota("k:k1", budget=100, period_start=86_400)
            refused = await store.admit(UID, "r1", 20, ttl=60, quotas=(day1,))
            assert refused.refused is not None
            assert refused.refused.limit == "budget"
            assert (await store.admit(UID, "r2", 10, ttl=60, quotas=(day1,))).ok
            day2 = Quota("k:k1", budget=100, period_start=2 * 86_400)
            assert (await store.admit(UID, "r3", 90, ttl=60, quotas=(day2,))).ok
            usage = await store.quota_usage(UID, day2)
            assert (usage.spent, usage.reserved) == (0, 100)

    asyncio.run(main())


def test_a_budget_set_on_a_scope_already_counted_reads_its_spend_from_the_ledger(
    stores: Factory,
) -> None:
    # Newcomer trial of issue 12: a key limited by rpm alone, then given a budget, was
    # admitted as if nothing had been spent in the period.
    async def main() -> None:
        async with stores({"k:k1@86400": 90, "k:k1@0": 95}) as store:
            assert (await store.admit(UID, "r1", 10, ttl=60, quotas=(limited(KEY, rpm=100),))).ok
            day = Quota("k:k1", budget=100, period_start=86_400, period="day", rpm=100)
            refused = await store.admit(UID, "r2", 1, ttl=60, quotas=(day,))
            assert refused.refused is not None
            assert refused.refused.limit == "budget"
            assert (await store.quota_usage(UID, day)).spent == 90
            # The period's kind changes: counted again from the ledger, not carried over.
            total = Quota("k:k1", budget=200, period_start=0, period="total", rpm=100)
            assert (await store.quota_usage(UID, total)).spent == 95
            # A caller behind on the clock (yesterday's start) does not move the period back.
            assert (await store.quota_usage(UID, day)).spent == 90
            yesterday = Quota("k:k1", budget=100, period_start=0, period="day", rpm=100)
            assert (await store.quota_usage(UID, yesterday)).spent == 90

    asyncio.run(main())


def test_tpm_counts_reserved_tokens_corrected_at_settlement(stores: Factory) -> None:
    async def main() -> None:
        async with stores({}) as store:
            q = (limited(KEY, tpm=100),)
            assert (await store.admit(UID, "r1", 1, ttl=60, quotas=q, tokens=60)).ok
            refused = await store.admit(UID, "r2", 1, ttl=60, quotas=q, tokens=50)
            assert refused.refused is not None
            assert refused.refused.limit == "tpm"
            assert refused.refused.retry_ms is not None
            await store.settle(usage_record("r1", UID, 1))  # used 10 prompt + 5 output
            assert (await store.quota_usage(UID, q[0])).tokens == 15
            assert (await store.admit(UID, "r2", 1, ttl=60, quotas=q, tokens=50)).ok
            never = await store.admit(UID, "r3", 1, ttl=60, quotas=q, tokens=101)
            assert never.refused is not None
            assert never.refused.retry_ms is None

    asyncio.run(main())


def test_concurrency_is_held_until_settlement_or_expiry(stores: Factory) -> None:
    async def main() -> None:
        async with stores({}) as store:
            q = (limited(KEY, max_concurrent=2),)
            assert (await store.admit(UID, "r1", 1, ttl=60, quotas=q)).ok
            assert (await store.admit(UID, "r2", 1, ttl=0.2, quotas=q)).ok
            refused = await store.admit(UID, "r3", 1, ttl=60, quotas=q)
            assert refused.refused is not None
            assert refused.refused.limit == "max_concurrent"
            await store.settle(usage_record("r1", UID, 1))
            assert (await store.admit(UID, "r3", 1, ttl=60, quotas=q)).ok
            assert not (await store.admit(UID, "r4", 1, ttl=60, quotas=q)).ok
            await asyncio.sleep(0.3)  # r2 crashed: its hold expires
            assert (await store.admit(UID, "r4", 1, ttl=60, quotas=q)).ok

    asyncio.run(main())


def test_a_readmitted_request_is_not_another_request(stores: Factory) -> None:
    # How a stream grows its hold: the same request id, a larger amount and token count.
    async def main() -> None:
        async with stores({}) as store:
            q = (limited(KEY, rpm=1, max_concurrent=1, tpm=100, budget=50),)
            assert (await store.admit(UID, "r1", 10, ttl=60, quotas=q, tokens=20)).ok
            grown = await store.admit(UID, "r1", 40, ttl=60, quotas=q, tokens=90)
            assert grown.ok
            usage = grown.quotas[0]
            assert (usage.requests, usage.tokens, usage.reserved, usage.in_flight) == (
                1,
                90,
                40,
                1,
            )

    asyncio.run(main())


def test_key_and_user_limits_both_apply(stores: Factory) -> None:
    async def main() -> None:
        async with stores({}) as store:
            q = (limited(KEY, rpm=5), limited(USER, rpm=2))
            assert (await store.admit(UID, "r1", 1, ttl=60, quotas=q)).ok
            assert (await store.admit(UID, "r2", 1, ttl=60, quotas=q)).ok
            refused = await store.admit(UID, "r3", 1, ttl=60, quotas=q)
            assert refused.refused is not None
            assert refused.refused.scope == f"u:{UID}"
            # Nothing of a refused call was counted anywhere.
            key_usage = await store.quota_usage(UID, q[0])
            assert (key_usage.requests, key_usage.in_flight) == (2, 2)
            assert await store.snapshot(UID) == (1_000_000, 2)

    asyncio.run(main())


def test_a_balance_refusal_counts_nothing_against_the_quotas(stores: Factory) -> None:
    async def main() -> None:
        async with stores({}) as store:
            q = (limited(KEY, rpm=5, budget=10**9),)
            refused = await store.admit(UID, "r1", 2_000_000, ttl=60, quotas=q)
            assert not refused.ok
            assert refused.refused is None
            usage = await store.quota_usage(UID, q[0])
            assert (usage.requests, usage.reserved) == (0, 0)

    asyncio.run(main())
