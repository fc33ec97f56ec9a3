"""The gateway's dependencies, built once at startup and passed to everything that needs them."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from gateway import catalog as catalog_mod
from gateway import postings
from gateway.alerts.outbox import Alerts
from gateway.alerts.sender import Schedule, Sender
from gateway.auth import Authenticator
from gateway.billing import Billing
from gateway.billing.autotopup import AutoTopUp, LowBalanceSignal
from gateway.catalog import Catalog
from gateway.ledger import open_ledger
from gateway.ledger.base import Ledger
from gateway.listeners import SettlementListener
from gateway.metering.modes import Background, Metering, open_metering
from gateway.metering.store import BalanceStore
from gateway.metrics import Metrics
from gateway.records import Entry
from gateway.routing import Policy, Router
from gateway.settings import Settings
from gateway.upstream import Upstreams
from gateway.usage_retention import UsageRetention

log = logging.getLogger("gateway")


@dataclass
class Services:
    settings: Settings
    ledger: Ledger
    metering: Metering
    auth: Authenticator
    upstreams: Upstreams
    catalog: Catalog
    billing: Billing
    # Which deployment serves each call, and the cooldowns (gateway.routing).
    router: Router
    # Operator alert webhooks: the outbox writer and its sender (gateway.alerts).
    alerts: Alerts
    alert_sender: Sender
    # The usage rows' months: added ahead, dropped past GATEWAY_USAGE_RETENTION_MONTHS.
    retention: UsageRetention
    inflight: int = 0
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    metrics: Metrics = field(default_factory=Metrics)
    # Called in order after every settlement (gateway.listeners).
    on_settled: tuple[SettlementListener, ...] = ()

    @property
    def store(self) -> BalanceStore:
        return self.metering.store

    @property
    def writer(self) -> Background:
        return self.metering.writer

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
    metrics = Metrics()
    try:
        metering = await open_metering(settings, ledger, metrics)
    except BaseException:
        await ledger.close()
        raise
    alerts = Alerts(settings.alert_webhook_urls, ledger.webhooks)
    billing = Billing.from_settings(
        settings, currency=catalog.currency, ledger=ledger, store=metering.store, alerts=alerts
    )
    services = Services(
        settings=settings,
        ledger=ledger,
        metering=metering,
        metrics=metrics,
        auth=Authenticator(ledger.directory, ttl=settings.auth_cache_ttl),
        upstreams=Upstreams(
            connect_timeout=settings.upstream_connect_timeout,
            read_timeout=settings.upstream_read_timeout,
        ),
        catalog=catalog,
        billing=billing,
        router=Router(Policy.from_settings(settings), metrics),
        alerts=alerts,
        alert_sender=Sender(alerts, ledger.webhooks, Schedule.from_settings(settings)),
        retention=UsageRetention(
            ledger.usage_storage, settings.usage_retention_months, audit=ledger.audit
        ),
        on_settled=(
            metrics.settled,
            LowBalanceSignal(settings.low_balance_warn, settings.low_balance_critical, alerts),
            AutoTopUp(billing),
        ),
    )
    services.idle.set()
    if settings.crash_after_commit is not None:
        postings.after_commit = _crash_after(settings.crash_after_commit)
    await metering.start()
    await services.alert_sender.start()
    await services.retention.start()
    return services


async def shutdown(services: Services) -> None:
    await services.drain(services.settings.shutdown_grace)
    await services.billing.close()
    await services.retention.stop()
    await services.alert_sender.stop()  # after billing: its last alerts reach the outbox
    await services.metering.stop()
    await services.upstreams.close()
    await services.store.close()
    await services.ledger.close()


def _crash_after(prefix: str) -> Callable[[Entry], None]:
    def crash(entry: Entry) -> None:
        if entry.reference.startswith(prefix):
            log.error("GATEWAY_TEST_CRASH_AFTER_COMMIT: exiting after %s", entry.reference)
            os._exit(70)

    return crash
