"""The BalanceStore on Redis (production mode): one Lua call admits, one Lua call settles.

Keys (under ``<prefix>`` on a single Redis, ``<prefix>{<shard tag>}:`` when sharded: see
layout.py; ``prefix`` defaults to ``gw:``); the Lua files beside this module state each
invariant. Every script call touches one user's keys and their shard's stream: one hash slot.

    u:<uid>    hash  bal (nano-USD), res (sum of live reservations), lver (ledger version loaded)
    r:<uid>    hash  request id -> reserved amount
    rx:<uid>   zset  request id -> expiry, ms on the Redis server clock
    pc:<uid>   hash  ledger version -> delta: credits committed while no balance was loaded
    cv:<uid>   set   ledger versions of the credits applied since the load: credit is
                     idempotent per version, for as long as the balance lives
    s:<rid>    marker, 7 days: settle is idempotent per request id
    q:<scope>, qh:, qx:, qw:, qt:  one quota scope (k:<key id> | u:<user id>, see quota.py and
               admit.lua): counters, holds and their expiry, the 60 s log and its tokens
    usage      stream of settled records (field ``r``), one per shard, drained into the ledger
               by a StreamWriter per shard in every process

Operating requirements: Redis >= 6.2 (XAUTOCLAIM), ``appendonly yes`` and ``maxmemory-policy
noeviction``. A balance evicted or lost while its usage still sits in the stream would be
reloaded from the ledger without those debits, so balances never carry a TTL. Amounts are exact
up to 2**53 nano-USD (about 9 million USD) per value, because Lua numbers are doubles.

Redis unreachable: ``admit`` raises ``Unavailable`` (503; nothing is served unmetered), while
``settle`` and ``credit`` (both already owed: the call was served, the ledger committed) go to
a retry queue, journaled to this process's spill file, and are retried in the background until
Redis takes them (idempotent per request id / ledger version, so a reply lost after the script ran
is harmless). Spill files of dead processes are adopted at ``open()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

from redis.asyncio import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError

from gateway.errors import Unavailable
from gateway.ledger.base import UnknownUser
from gateway.metering.clients import DOWN, Client, connect
from gateway.metering.codec import encode_record
from gateway.metering.layout import Layout, LayoutMismatch, UserKeys, check_marker
from gateway.metering.quota import LimitRefusal, Quota, QuotaUsage
from gateway.metering.script_batch import ScriptBatcher
from gateway.metering.spill import Credit, Journal, Pending, encode_pending
from gateway.metering.store import Admission, Loader, SpendLoader, no_spend, scopes_of
from gateway.records import UsageRecord

log = logging.getLogger("gateway.redis_store")
MARKER_TTL = 7 * 24 * 3600
PENDING_CREDIT_TTL = 24 * 3600  # far longer than any ledger read a load can be waiting on
SCRIPTS = ("admit", "settle", "load", "credit", "advance")
MISS, ALREADY, SPEND_MISS, LIMITED = -1, 0, -2, 3


__all__ = ["RedisStore", "connect"]


class RedisStore:
    def __init__(
        self,
        redis: Client,
        loader: Loader,
        *,
        prefix: str = "gw:",
        layout: Layout | None = None,
        spill_dir: Path | None = None,
        close_redis: bool = False,
        spend_loader: SpendLoader = no_spend,
    ) -> None:
        self._redis = redis
        self._loader = loader
        self._spend_loader = spend_loader
        # A cluster needs tagged keys even with one shard; one Redis keeps the untagged layout.
        self.layout = layout or Layout(prefix, tagged=isinstance(redis, RedisCluster))
        self._close_redis = close_redis
        folder = resources.files("gateway.metering")
        self._sources = {n: folder.joinpath(f"{n}.lua").read_text() for n in SCRIPTS}
        self._scripts = {n: redis.register_script(src) for n, src in self._sources.items()}
        # One Redis: calls made in one loop turn share a pipeline. A cluster routes each call to
        # its slot's master itself (a pipeline there would span nodes and failovers).
        self._batcher = (
            None if isinstance(redis, RedisCluster) else ScriptBatcher(redis, self._sources)
        )
        self._journal = Journal(spill_dir) if spill_dir is not None else None
        self._retry: deque[Pending] = deque()
        self._retrier: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()

    @property
    def backlog(self) -> int:
        """Settlements and credits waiting for Redis in this process."""
        return len(self._retry)

    async def ping(self) -> None:
        try:
            await self._redis.ping()
        except DOWN as exc:
            raise Unavailable("metering store unavailable") from exc

    @property
    def streams(self) -> tuple[str, ...]:
        """Every shard's usage stream."""
        return self.layout.streams

    @property
    def stream(self) -> str:
        """The usage stream of a one-shard layout (ValueError when sharded: see ``streams``)."""
        if len(self.streams) != 1:
            raise ValueError(f"{len(self.streams)} usage streams: use RedisStore.streams")
        return self.streams[0]

    async def open(self) -> None:
        """Checks the key layout, preloads the scripts (both skipped while Redis is down) and
        adopts spill files left by dead processes.

        Raises ``LayoutMismatch`` when Redis holds keys of another layout (layout.py)."""
        with contextlib.suppress(*DOWN):
            await self._check_layout()
            for source in self._sources.values():
                await self._redis.script_load(source)
        if self._journal is not None:
            adopted = self._journal.open()
            if adopted:
                log.warning("replaying %d spilled settlements", len(adopted))
                self._retry.extend(adopted)
                self._kick()

    async def _check_layout(self) -> None:
        layout = self.layout
        want = layout.description
        if await self._redis.set(layout.marker_key, want, nx=True):
            # First start with a marker: keys an older release left are untagged, one shard.
            legacy = Layout(layout.prefix)
            if want != legacy.description and await self._redis.exists(legacy.streams[0]):
                await self._redis.delete(layout.marker_key)
                raise LayoutMismatch(
                    f"Redis holds usage in the unsharded layout ({legacy.streams[0]}) and this"
                    f" process is configured for {want}; see README, Redis Cluster"
                )
            return
        await check_marker(self._redis, layout)

    def _user(self, user_id: str) -> UserKeys:
        return self.layout.user(user_id)

    async def _call(self, name: str, keys: list[str], args: Iterable[Any]) -> Any:
        try:
            if self._batcher is not None:
                return await self._batcher.call(name, keys, list(args))
            return await self._scripts[name](keys=keys, args=list(args))
        except (AttributeError, TypeError) as exc:
            # redis-py (8.1, redis/redis-py#4287) leaks the transport's error when it writes on
            # a connection the server closed (a killed or failed-over node): it is Redis being
            # unreachable, so the caller answers 503 or queues, never 500.
            raise RedisConnectionError(f"connection lost: {exc!r}") from exc

    async def _load(self, user_id: str) -> None:
        try:
            loaded = await self._loader(user_id)
        except Exception as exc:
            raise Unavailable("ledger unavailable: cannot load the balance") from exc
        if loaded is None:
            raise UnknownUser(user_id)
        k = self._user(user_id)
        u, r, _ = k.holds
        await self._call("load", [u, r, k.pending, k.credited], loaded)

    async def admit(
        self,
        user_id: str,
        request_id: str,
        amount: int,
        *,
        ttl: float,
        quotas: tuple[Quota, ...] = (),
        tokens: int = 0,
    ) -> Admission:
        return await self._admit(user_id, request_id, amount, int(ttl * 1000), quotas, tokens)

    async def _admit(
        self,
        user_id: str,
        request_id: str,
        amount: int,
        ttl_ms: int,
        quotas: tuple[Quota, ...] = (),
        tokens: int = 0,
    ) -> Admission:
        k = self._user(user_id)
        keys = k.holds
        for q in quotas:
            keys.extend(k.quota(q.scope))
        seeds = [""] * len(quotas)
        try:
            for _ in range(2 + len(quotas)):
                args: list[Any] = [request_id, amount, ttl_ms, tokens, len(quotas)]
                for q, seed in zip(quotas, seeds, strict=True):
                    args += [_opt(q.budget), f"{q.period}:{q.period_start}", _opt(q.rpm)]
                    args += [_opt(q.tpm)]
                    args += [_opt(q.max_concurrent), seed]
                reply = await self._call("admit", keys, args)
                if reply[0] == SPEND_MISS:
                    q = quotas[int(reply[1]) - 1]
                    seeds[int(reply[1]) - 1] = str(await self._spend(q))
                elif reply[0] == LIMITED:
                    limit = reply[2].decode() if isinstance(reply[2], bytes) else str(reply[2])
                    retry = int(reply[3])
                    refused = LimitRefusal(
                        quotas[int(reply[1]) - 1].scope, limit, None if retry < 0 else retry
                    )
                    return Admission(False, 0, 0, refused=refused)
                elif reply[0] != MISS:
                    counters = tuple(
                        QuotaUsage(q.scope, *(int(v) for v in reply[3 + 6 * i : 9 + 6 * i]))
                        for i, q in enumerate(quotas)
                    )
                    return Admission(
                        ok=reply[0] == 1,
                        available=int(reply[1]),
                        balance=int(reply[2]),
                        quotas=counters,
                    )
                else:
                    await self._load(user_id)
        except DOWN as exc:
            raise Unavailable("metering store unavailable") from exc
        raise Unavailable("metering store unavailable: balance vanished while loading")

    async def _spend(self, q: Quota) -> int:
        try:
            return await self._spend_loader(q)
        except Exception as exc:
            raise Unavailable("ledger unavailable: cannot read the period's spend") from exc

    async def quota_usage(self, user_id: str, quota: Quota) -> QuotaUsage:
        """Counters of one scope of ``user_id`` (a snapshot admission: nothing changes)."""
        admission = await self._admit(user_id, "", 0, 0, (quota,))
        return admission.quotas[0]

    async def settle(self, record: UsageRecord) -> int | None:
        """Balance after the debit; None when already settled or queued (Redis unreachable)."""
        # Shielded: a caller cancelled mid-settlement (shutdown, client gone) must not leave
        # the record neither settled nor queued.
        return await asyncio.shield(self._settle_or_queue(record))

    async def _settle_or_queue(self, record: UsageRecord) -> int | None:
        try:
            return await self._settle(record)
        except UnknownUser:
            raise
        except Exception as exc:  # Redis or the ledger (loading a lost balance) is down
            log.error("settlement of %s queued for retry: %r", record.request_id, exc)
            self._queue([record])
            return None

    async def _settle(self, record: UsageRecord) -> int | None:
        k = self._user(record.user_id)
        keys = [*k.holds, k.marker(record.request_id), k.stream]
        for scope in scopes_of(record):
            keys.extend(k.quota(scope))
        used = record.prompt_tokens + record.completion_tokens
        args = (record.request_id, -record.cost, encode_record(record), MARKER_TTL, used)
        for _ in range(2):
            reply = await self._call("settle", keys, args)
            if reply[0] == ALREADY:
                return None
            if reply[0] != MISS:
                return int(reply[1])
            await self._load(record.user_id)
        raise Unavailable("balance vanished while loading")

    def _queue(self, items: list[Pending]) -> None:
        if self._journal is not None:
            self._journal.append(items)  # durable before we rely on memory alone
        self._retry.extend(items)
        self._kick()

    def _kick(self) -> None:
        if self._retrier is None or self._retrier.done():
            self._retrier = asyncio.create_task(self._retry_loop(), name="settle-retry")

    async def _retry_loop(self) -> None:
        delay = 0.05
        while self._retry and not self._closing.is_set():
            item = self._retry[0]
            try:
                if isinstance(item, Credit):
                    await self._credit(item)
                else:
                    await self._settle(item)
            except UnknownUser:
                log.error("dropping queued settlement of unknown user: %s", encode_pending(item))
            except Exception as exc:
                log.warning("retry towards Redis failed (%r); %d queued", exc, len(self._retry))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), delay)
                delay = min(delay * 2, 5.0)
                continue
            self._retry.popleft()
            delay = 0.05
        if not self._retry and self._journal is not None:
            self._journal.clear()

    async def credit(self, user_id: str, delta: int, *, version: int) -> None:
        """Applies a change the ledger committed; ``version`` is the user's ledger version
        right after it (idempotent per version). Redis down: queued and retried like a
        settlement, since the ledger has it and a retried caller may not resend it."""
        item = Credit(user_id, delta, version)
        try:
            await self._credit(item)
        except DOWN as exc:
            log.error("credit of %s v%d queued for retry: %r", user_id, version, exc)
            self._queue([item])

    async def _credit(self, c: Credit) -> int:
        k = self._user(c.user_id)
        keys = [k.balance, k.pending, k.credited]
        return int(await self._call("credit", keys, (c.delta, c.version, PENDING_CREDIT_TTL)))

    # -- what the reconciler reads and writes -------------------------------------------

    async def cached_users(self) -> list[str]:
        """Users whose balance Redis holds now (SCAN, of every master of a cluster: never
        blocks Redis)."""
        users: list[str] = []
        async for key in self._redis.scan_iter(match=self.layout.balance_pattern, count=1000):
            user_id = self.layout.user_of(key.decode() if isinstance(key, bytes) else str(key))
            if user_id is not None:
                users.append(user_id)
        return users

    async def applied(self, user_id: str) -> tuple[int, set[int]] | None:
        """(lver, versions credited since the load) of a cached balance; None if not cached."""
        # Two reads, not one MULTI (redis-py's cluster MULTI fails on SMEMBERS' reply): a
        # credit or load between them is harmless, since credit.lua is idempotent per version
        # and advance.lua re-checks lver and cv in one atomic step.
        k = self._user(user_id)
        lver = await self._redis.hget(k.balance, "lver")
        members = await self._redis.smembers(k.credited)
        if lver is None:
            return None
        return int(lver), {int(v) for v in members}

    async def advance(self, user_id: str, lver: int, new: int, credits: list[int]) -> bool:
        """Moves lver to ``new`` if still ``lver`` and every version in ``credits`` (all
        non-usage entries in (lver, new]) was applied; see advance.lua."""
        k = self._user(user_id)
        keys = [k.balance, k.credited]
        return int(await self._call("advance", keys, (lver, new, *credits))) == 1

    async def snapshot(self, user_id: str) -> tuple[int, int] | None:
        try:
            admission = await self._admit(user_id, "", 0, 0)
        except UnknownUser:
            return None
        return admission.balance, admission.balance - admission.available

    async def close(self) -> None:
        """Last try for queued settlements (bounded), then spills what is left."""
        if self._retrier is not None and not self._retrier.done():
            done, _ = await asyncio.wait({self._retrier}, timeout=2.0)
            self._closing.set()  # cooperative: cancelling redis-py mid-command can hang
            if not done:
                done, _ = await asyncio.wait({self._retrier}, timeout=3.0)
            if not done:
                self._retrier.cancel()
                await asyncio.wait({self._retrier}, timeout=1.0)
        if self._retry:
            log.error(
                "%d settlements/credits could not reach Redis; spilled to %s",
                len(self._retry),
                self._journal.path if self._journal else "nowhere (no spill_dir!)",
            )
        if self._journal is not None:
            self._journal.close(list(self._retry))
        if self._close_redis:
            await self._redis.aclose()


def _opt(value: int | None) -> str | int:
    return "" if value is None else value
