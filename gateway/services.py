"""The gateway's dependencies, built once at startup and passed to everything that needs them."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from gateway import catalog as catalog_mod
from gateway.auth import Authenticator
from gateway.catalog import Catalog
from gateway.ledger import open_ledger
from gateway.ledger.base import Ledger
from gateway.metering.settlement import OutboxWriter
from gateway.metering.store import BalanceStore, MemoryStore
from gateway.metrics import Metrics
from gateway.proxy.upstream import Upstreams
from gateway.settings import Settings

if TYPE_CHECKING:
    from gateway.billing import Billing

log = logging.getLogger("gateway")


class Background(Protocol):
    """Something that runs beside the server (the usage writer, a stream consumer)."""

    backlog: int
    last_error: str | None

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass
class Services:
    settings: Settings
    ledger: Ledger
    store: BalanceStore
    auth: Authenticator
    upstreams: Upstreams
    catalog: Catalog
    writer: Background
    billing: Billing | None = None  # set by gateway.billing.routes.routes()
    inflight: int = 0
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    metrics: Metrics = field(default_factory=Metrics)

    def call_started(self) -> None:
        self.inflight += 1
        self.idle.clear()

    def call_ended(self) -> None:
        self.inflight -= 1
        if self.inflight == 0:
            self.idle.set()

    async def drain(self, grace: float) -> None:
        """Waits (bounded) until no call is between admission and settlement."""
        if self.inflight:
            try:
                await asyncio.wait_for(self.idle.wait(), grace)
            except TimeoutError:
                log.error("shutdown grace over with %d calls still open", self.inflight)

    def reload_catalog(self) -> tuple[Catalog, Catalog]:
        """Re-reads models.yaml; raises CatalogError and keeps the old prices when invalid."""
        new = catalog_mod.load(self.settings.models_path, self.settings.extra_env)
        old, self.catalog = self.catalog, new
        return old, new


async def build(settings: Settings, *, catalog: Catalog | None = None) -> Services:
    if catalog is None:
        catalog = catalog_mod.load(settings.models_path, settings.extra_env)
    ledger = await open_ledger(settings.database_url)
    store, writer = await metering(settings, ledger)
    services = Services(
        settings=settings,
        ledger=ledger,
        store=store,
        auth=Authenticator(ledger.directory, ttl=settings.auth_cache_ttl),
        upstreams=Upstreams(
            connect_timeout=settings.upstream_connect_timeout,
            read_timeout=settings.upstream_read_timeout,
        ),
        catalog=catalog,
        writer=writer,
    )
    services.idle.set()
    await writer.start()
    return services


async def metering(settings: Settings, ledger: Ledger) -> tuple[BalanceStore, Background]:
    """The balance store and usage writer for the configured mode (not started)."""
    if settings.redis_url is None:
        store = MemoryStore(ledger.journal.balance)
        writer = OutboxWriter(
            ledger.journal,
            store.outbox,
            spill_path=_spill_path(settings.database_url),
            interval=settings.usage_flush_interval,
        )
        store.on_record = writer.notify
        return store, writer
    from gateway.metering.redis_store import build_redis_metering

    return await build_redis_metering(settings, ledger)


async def shutdown(services: Services) -> None:
    await services.drain(services.settings.shutdown_grace)
    if services.billing is not None:
        await services.billing.close()
    await services.writer.stop()
    await services.upstreams.close()
    await services.store.close()
    await services.ledger.close()


def _spill_path(database_url: str) -> Path | None:
    path = database_url.removeprefix("sqlite:///")
    if path in ("", ":memory:"):
        return None
    return Path(path + ".outbox.jsonl")
