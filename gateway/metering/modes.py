"""The two metering modes, built the same way from Settings: a balance store, a usage writer
and (production) a reconciler.

    embedded    MemoryStore  -> OutboxWriter  -> Ledger.write_usage   (one process)
    production  RedisStore   -> StreamWriter  -> Ledger.write_usage   (many processes)
                             +  Reconciler (Redis balances vs committed ledger credits)

Production runs on one Redis or a Redis Cluster (``redis+cluster://``), with one StreamWriter
per usage stream shard in every process (layout.py).

Both spill what they cannot hand on to ``Settings.spill_folder()``.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from redis.asyncio import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.ledger.base import Ledger
from gateway.metering.clients import DOWN, Client, is_cluster_url
from gateway.metering.layout import Layout, LayoutMismatch
from gateway.metering.outbox import OutboxWriter
from gateway.metering.quota import Quota, since
from gateway.metering.reconciler import Reconciler
from gateway.metering.redis_store import RedisStore, connect
from gateway.metering.store import BalanceStore, MemoryStore, SpendLoader
from gateway.metering.stream_writer import StreamWriter, StreamWriters
from gateway.metrics import Metrics
from gateway.settings import Settings, SettingsError

log = logging.getLogger("gateway.metering")

# What a Redis that holds balances must be set to: anything else can lose or evict a balance
# (or a settlement marker) and so bill a call twice or not at all.
DURABLE = {"appendonly": "yes", "maxmemory-policy": "noeviction"}
CLUSTER_SHARDS = 16  # the default on a cluster: spread over the masters, 16 streams to read


def layout_of(redis_url: str, shards: int | None) -> Layout:
    """The key layout a process of these settings uses (``GATEWAY_REDIS_SHARDS``, or 1 shard
    untagged on one Redis and ``CLUSTER_SHARDS`` hash-tagged ones on a cluster)."""
    cluster = is_cluster_url(redis_url)
    return Layout(shards=shards or (CLUSTER_SHARDS if cluster else 1), tagged=cluster)


class Background(Protocol):
    """Something that runs beside the server (the usage writer, a stream consumer)."""

    @property
    def backlog(self) -> int: ...

    @property
    def last_error(self) -> str | None: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass(frozen=True)
class Metering:
    store: BalanceStore
    writer: Background
    reconciler: Reconciler | None = None

    async def start(self) -> None:
        await self.writer.start()
        if self.reconciler is not None:
            await self.reconciler.start()

    async def stop(self) -> None:
        """Stops the background work; the store itself is closed by its owner after."""
        if self.reconciler is not None:
            await self.reconciler.stop()
        await self.writer.stop()


def _spend_loader(ledger: Ledger) -> SpendLoader:
    async def spend(quota: Quota) -> int:
        return await ledger.reports.spend_since(scope=quota.scope, since=since(quota))

    return spend


async def open_metering(settings: Settings, ledger: Ledger, metrics: Metrics) -> Metering:
    """The store, writer and reconciler of the configured mode (opened, not started).

    Raises ``SettingsError`` when Redis is configured in a way that can lose balances
    (see ``check_durability``)."""
    spill = settings.spill_folder()
    if settings.redis_url is None:
        memory = MemoryStore(ledger.journal.balance, spend_loader=_spend_loader(ledger))
        spill_path = spill / "outbox.jsonl"
        _adopt_legacy_spill(settings.database_url, spill_path)
        outbox = OutboxWriter(
            ledger.journal,
            memory.outbox,
            spill_path=spill_path,
            interval=settings.usage_flush_interval,
        )
        memory.on_record = outbox.notify
        return Metering(memory, outbox)
    redis = connect(settings.redis_url)
    if settings.allow_volatile_redis:
        log.warning(
            "GATEWAY_ALLOW_VOLATILE_REDIS=1: Redis durability not checked; balances may be lost"
            " on a Redis restart or evicted under memory pressure"
        )
    else:
        try:
            await check_durability(redis)
        except BaseException:
            await redis.aclose()
            raise
    layout = layout_of(settings.redis_url, settings.redis_shards)
    store = RedisStore(
        redis,
        ledger.journal.balance,
        layout=layout,
        spill_dir=spill,
        close_redis=True,
        spend_loader=_spend_loader(ledger),
    )
    try:
        await store.open()
    except LayoutMismatch as exc:
        await store.close()
        raise SettingsError(str(exc)) from exc
    # Its own client: a blocking XREADGROUP must not hold a connection the hot path needs,
    # and its socket timeout must outlast the block.
    streams = connect(settings.redis_url, socket_timeout=10.0)
    writer = StreamWriters(
        [
            StreamWriter(
                streams, ledger, stream=name, claim_idle_ms=int(settings.stream_claim_idle * 1000)
            )
            for name in store.streams
        ],
        close_redis=True,
    )
    with contextlib.suppress(*DOWN):  # Redis down at start: the writers keep trying
        await writer.ensure_groups()
    reconciler = Reconciler(
        store, ledger.journal.entries_after, metrics=metrics, interval=settings.reconcile_interval
    )
    return Metering(store, writer, reconciler)


async def check_durability(redis: Client) -> None:
    """Refuses a Redis whose settings can lose or evict balances.

    Balances live only in Redis between a settlement and its ledger write, and the settle
    markers that make billing exactly-once carry TTLs: ``appendonly no`` loses them on a
    restart, any ``maxmemory-policy`` but ``noeviction`` may evict them under memory pressure.
    Raises ``SettingsError`` naming the setting and the opt-out
    (``GATEWAY_ALLOW_VOLATILE_REDIS=1``). An unreachable Redis is only logged: the gateway
    answers 503 until it is back, and the check cannot tell anything then."""
    try:
        if isinstance(redis, RedisCluster):
            # Every node: a replica is a master after a failover.
            await redis.initialize()
            for node in redis.get_nodes():
                await _check_node(redis, node)
        else:
            await _check_node(redis, None)
    except (RedisConnectionError, RedisTimeoutError, RedisClusterException, OSError) as exc:
        log.warning("Redis durability not checked (unreachable: %r)", exc)


async def _check_node(redis: Client, node: Any) -> None:
    found: dict[str, str] = {}
    where = "" if node is None else f" (cluster node {node.name})"
    try:
        for name in DURABLE:
            # Keys come back as bytes unless the client decodes responses.
            if node is None:
                reply: Any = await redis.config_get(name)
            else:
                reply = await redis.config_get(name, target_nodes=node)
            found[name] = _text(reply.get(name) or reply.get(name.encode()) or "")
    except (RedisConnectionError, RedisTimeoutError):
        raise
    except RedisError as exc:
        raise SettingsError(
            f"cannot read Redis settings ({exc}); make sure appendonly is yes and "
            "maxmemory-policy is noeviction, then set GATEWAY_ALLOW_VOLATILE_REDIS=1"
        ) from exc
    wrong = [f"{k} is {found[k]!r} (needs {v!r})" for k, v in DURABLE.items() if found[k] != v]
    if wrong:
        raise SettingsError(
            f"Redis can lose or evict balances{where}: "
            + "; ".join(wrong)
            + ". Fix redis.conf (or CONFIG SET), or set GATEWAY_ALLOW_VOLATILE_REDIS=1 to start"
            " anyway (balances may then be lost on a Redis restart or under memory pressure)"
        )


def _adopt_legacy_spill(database_url: str, spill_path: Path) -> None:
    """Releases before the one spill rule kept the embedded outbox beside the database
    (``<db>.outbox.jsonl``): its records still have to reach the ledger, so they move to the
    new file (appended, so nothing already there is lost) before the outbox replays it."""
    path = database_url.removeprefix("sqlite:///")
    if not database_url.startswith("sqlite:///") or path in ("", ":memory:"):
        return
    legacy = Path(path + ".outbox.jsonl")
    if not legacy.exists():
        return
    spill_path.parent.mkdir(parents=True, exist_ok=True)
    with spill_path.open("ab") as fh:
        fh.write(legacy.read_bytes())
        fh.flush()
        os.fsync(fh.fileno())
    legacy.unlink()
    log.warning("moved the embedded outbox spill %s to %s", legacy, spill_path)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
