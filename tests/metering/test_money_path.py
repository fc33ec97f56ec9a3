"""The one money path (gateway.postings) against real stores: a balance load racing every
kind of credit and debit entry never counts one twice or loses one, a replay moves nothing,
and the reconciler repairs what a crash between the ledger commit and the store apply left.

Runs on the embedded pair (SQLite + in-process store) and the production pairs (PostgreSQL +
Redis, PostgreSQL + a Redis Cluster in a sharded layout; private servers started by the
suite). Each interleaving is forced, not hoped for: the store's loader is held between its
ledger read and its use.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.ledger import open_ledger
from gateway.ledger.base import Ledger
from gateway.metering.layout import Layout
from gateway.metering.reconciler import Reconciler
from gateway.metering.redis_store import RedisStore, connect
from gateway.metering.store import BalanceStore, MemoryStore
from gateway.metrics import Metrics
from gateway.postings import Postings, apply
from gateway.records import Entry
from tests.metering.test_store_contract import CLUSTER_LAYOUT

START = 10_000_000  # nano-USD granted at creation
MOVE = 3_000_000


class HeldLoader:
    """The ledger's balance read; ``hold()`` parks the next load after its read."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        self._gate: tuple[asyncio.Event, asyncio.Event] | None = None

    def hold(self) -> tuple[asyncio.Event, asyncio.Event]:
        read, resume = asyncio.Event(), asyncio.Event()
        self._gate = (read, resume)
        return read, resume

    async def __call__(self, user_id: str) -> tuple[int, int] | None:
        value = await self._ledger.journal.balance(user_id)
        if self._gate is not None:
            (read, resume), self._gate = self._gate, None
            read.set()
            await resume.wait()
        return value


@dataclass
class Books:
    ledger: Ledger
    store: BalanceStore
    loader: HeldLoader
    redis: RedisStore | None

    @property
    def postings(self) -> Postings:
        return Postings(self.ledger.journal, self.store)

    async def agree(self, user_id: str) -> int:
        """Asserts the store's balance equals the ledger's; returns it."""
        snapshot = await self.store.snapshot(user_id)
        durable = await self.ledger.journal.balance(user_id)
        assert snapshot is not None
        assert durable is not None
        assert snapshot[0] == durable[0], f"store {snapshot[0]} != ledger {durable[0]}"
        return durable[0]


PRODUCTION = [
    pytest.param("production", marks=pytest.mark.production),
    pytest.param("cluster", marks=pytest.mark.production),
]


def production_redis(request: pytest.FixtureRequest) -> tuple[str, Layout | None]:
    """(URL, layout) of the Redis a ``production`` or ``cluster`` parameter runs on."""
    if request.param == "cluster":
        return request.getfixturevalue("cluster_url"), CLUSTER_LAYOUT
    return request.getfixturevalue("redis_url"), None


@pytest.fixture(params=["embedded", *PRODUCTION])
def books(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Callable[[], contextlib.AbstractAsyncContextManager[Books]]:
    @contextlib.asynccontextmanager
    async def make() -> AsyncIterator[Books]:
        if request.param == "embedded":
            ledger = await open_ledger(f"sqlite:///{tmp_path / 'books.db'}")
            loader = HeldLoader(ledger)
            yield Books(ledger, MemoryStore(loader), loader, None)
            await ledger.close()
            return
        ledger = await open_ledger(request.getfixturevalue("pg_dsn"))
        url, layout = production_redis(request)
        redis = connect(url)
        loader = HeldLoader(ledger)
        store = RedisStore(redis, loader, layout=layout)
        await store.open()
        try:
            yield Books(ledger, store, loader, store)
        finally:
            await store.close()
            await redis.aclose()
            await ledger.close()

    return make


_users = itertools.count()


async def new_user(books: Books) -> str:
    user_id = f"u{next(_users)}"
    await books.ledger.directory.create_user(user_id=user_id, email=None)
    await books.postings.post(user_id, kind="grant", amount=START, reference=f"start:{user_id}")
    return user_id


# Every kind of movement the money path makes: (name, commit-only step, whole posting).
Commit = Callable[[Books, str, str], Awaitable[Entry]]


async def _grant(b: Books, uid: str, ref: str) -> Entry:
    return await b.ledger.journal.post_entry(uid, kind="grant", amount=MOVE, reference=ref)


async def _topup(b: Books, uid: str, ref: str) -> Entry:
    return await b.ledger.journal.post_entry(
        uid, kind="topup", amount=MOVE, reference=ref, actor="stripe"
    )


async def _refund(b: Books, uid: str, ref: str) -> Entry:
    return await b.ledger.journal.debit_up_to(
        uid, kind="refund", amount=MOVE, reference=ref, reason="refund", actor="stripe"
    )


async def _adjust_up(b: Books, uid: str, ref: str) -> Entry:
    return await b.ledger.journal.set_balance(
        uid, balance=START + MOVE, reference=ref, reason="up", actor="op"
    )


async def _adjust_down(b: Books, uid: str, ref: str) -> Entry:
    return await b.ledger.journal.post_entry(uid, kind="adjustment", amount=-MOVE, reference=ref)


MOVES: dict[str, Commit] = {
    "grant": _grant,
    "topup": _topup,
    "refund": _refund,
    "adjustment_up": _adjust_up,
    "adjustment_down": _adjust_down,
}


async def race(books: Books, uid: str, move: Commit, order: str, ref: str) -> Entry:
    """Runs the posting's two steps (commit, apply) and one balance load in ``order``."""
    if order == "loaded_before":
        await books.store.snapshot(uid)
        entry = await move(books, uid, ref)
        await apply(books.store, entry)
    elif order == "read_before_commit_used_after_apply":
        read, resume = books.loader.hold()
        loading = asyncio.create_task(books.store.snapshot(uid))
        await read.wait()
        entry = await move(books, uid, ref)
        await apply(books.store, entry)
        resume.set()
        await loading
    elif order == "loaded_between_commit_and_apply":  # the double-count of the old bug
        entry = await move(books, uid, ref)
        await books.store.snapshot(uid)
        await apply(books.store, entry)
    elif order == "read_after_commit_used_after_apply":
        entry = await move(books, uid, ref)
        read, resume = books.loader.hold()
        loading = asyncio.create_task(books.store.snapshot(uid))
        await read.wait()
        await apply(books.store, entry)
        resume.set()
        await loading
    else:
        raise AssertionError(order)
    return entry


ORDERS = [
    "loaded_before",
    "read_before_commit_used_after_apply",
    "loaded_between_commit_and_apply",
    "read_after_commit_used_after_apply",
]


@pytest.mark.parametrize("kind", list(MOVES))
def test_a_load_racing_any_movement_counts_it_exactly_once(
    books: Callable[[], contextlib.AbstractAsyncContextManager[Books]], kind: str
) -> None:
    async def main() -> None:
        async with books() as b:
            for order in ORDERS:
                uid = await new_user(b)
                entry = await race(b, uid, MOVES[kind], order, ref=f"{kind}:{uid}")
                assert entry.amount in (MOVE, -MOVE)
                after = await b.agree(uid)
                assert after == START + entry.amount, order
                # Re-applying the entry, and replaying the whole posting, change nothing.
                await apply(b.store, entry)
                again = await MOVES[kind](b, uid, entry.reference)
                assert not again.created
                assert again.version == entry.version
                await apply(b.store, again)
                assert await b.agree(uid) == after, order

    asyncio.run(main())


def test_concurrent_loads_and_postings_agree_every_time(
    books: Callable[[], contextlib.AbstractAsyncContextManager[Books]],
) -> None:
    async def main() -> None:
        async with books() as b:
            for i in range(40):
                uid = f"c{next(_users)}"
                await b.ledger.directory.create_user(user_id=uid, email=None)
                kinds = list(MOVES)[i % len(MOVES)], list(MOVES)[(i + 2) % len(MOVES)]
                await asyncio.gather(
                    b.store.snapshot(uid),
                    b.postings.post(uid, kind="grant", amount=START, reference=f"s:{uid}"),
                    b.store.snapshot(uid),
                )
                await asyncio.gather(
                    *(_posted(b, MOVES[k], uid, ref=f"{k}:{uid}:{n}") for n, k in enumerate(kinds)),
                    b.store.snapshot(uid),
                )
                await b.agree(uid)

    asyncio.run(main())


async def _posted(b: Books, move: Commit, uid: str, ref: str) -> None:
    await apply(b.store, await move(b, uid, ref))


@pytest.fixture(params=PRODUCTION)
def production(request: pytest.FixtureRequest) -> tuple[str, Layout | None]:
    return production_redis(request)


def test_reconciler_applies_a_committed_entry_the_store_never_got(
    pg_dsn: str, production: tuple[str, Layout | None]
) -> None:
    async def main() -> None:
        ledger = await open_ledger(pg_dsn)
        redis = connect(production[0])
        store = RedisStore(redis, ledger.journal.balance, layout=production[1])
        metrics = Metrics()
        reconciler = Reconciler(store, ledger.journal.entries_after, metrics=metrics)
        b = Books(ledger, store, HeldLoader(ledger), store)
        try:
            uid = await new_user(b)
            await store.snapshot(uid)  # Redis holds the balance
            # The crash window: committed to the ledger, never applied to Redis.
            lost = await _topup(b, uid, f"lost:{uid}")
            refund = await _refund(b, uid, f"lost-refund:{uid}")
            assert (await store.snapshot(uid) or (0, 0))[0] == START
            assert await reconciler.run_once() == 2
            assert await b.agree(uid) == START + lost.amount + refund.amount
            assert metrics.reconcile_repairs == 2
            assert metrics.reconcile_repaired == lost.amount + refund.amount
            # Idempotent: a second pass, or the money path's own late apply, moves nothing.
            assert await reconciler.run_once() == 0
            await apply(store, lost)
            assert await b.agree(uid) == START + lost.amount + refund.amount
            # lver moved past the repaired entries, so the applied-version set was emptied.
            state = await store.applied(uid)
            assert state is not None
            assert state == (refund.version, set())
        finally:
            await store.close()
            await redis.aclose()
            await ledger.close()

    asyncio.run(main())
