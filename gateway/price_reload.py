"""Price reload: re-read models.yaml (admin API, SIGHUP) and audit every price change.

(Cost arithmetic is ``gateway.pricing``; the prices themselves are ``gateway.catalog``.)

The catalog in memory is what calls are charged at; the ledger's price book (``model_prices``)
records it. Each load is diffed against the book in one transaction, and every model whose
price changed gets an audit event with the old and new values. Because the diff is against the
database and not against this process's memory, a change is recorded once however many
processes load the file, and a change made while the gateway was down is recorded at its next
start (``record_prices`` at startup).

A file that does not validate changes nothing: ``Services.reload_catalog`` raises before it
swaps, the old prices stay, and the failed attempt is audited with its error.

Usage records carry the unit prices they were charged at (the pipeline copies them from the
model it resolved at admission), so a reload never rewrites history and applies from the next
call on; a call already admitted finishes at the price it was admitted at.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway.catalog import Catalog, CatalogError
from gateway.errors import Unprocessable
from gateway.ledger.base import Ledger
from gateway.pricing import Tier
from gateway.records import AuditEvent
from gateway.report_records import PriceChange, PriceRow, PriceTier

if TYPE_CHECKING:
    from gateway.services import Services

log = logging.getLogger("gateway.prices")


def price_rows(catalog: Catalog) -> list[PriceRow]:
    """The catalog's prices as price-book rows, by model name (nano-USD per 1M tokens)."""
    return [
        PriceRow(
            model=m.name,
            provider=m.provider.name,
            upstream_model=m.upstream_model,
            kind=m.kind,
            max_output_tokens=m.max_output_tokens,
            input=m.price.input,
            cached_input=m.price.cached_input,
            output=m.price.output,
            cache_write=m.price.cache_write,
            cache_write_1h=m.price.cache_write_1h,
            audio_input=m.price.audio_input,
            audio_output=m.price.audio_output,
            tiers=tuple(_tier(t) for t in m.price.tiers),
            web_search=m.price.web_search,
        )
        for m in sorted(catalog.models.values(), key=lambda m: m.name)
    ]


def _tier(tier: Tier) -> PriceTier:
    p = tier.price
    return PriceTier(
        above_input_tokens=tier.above_input_tokens,
        input=p.input,
        output=p.output,
        cached_input=p.cached_input,
        cache_write=p.cache_write,
        cache_write_1h=p.cache_write_1h,
        audio_input=p.audio_input,
        audio_output=p.audio_output,
    )


async def record_prices(
    ledger: Ledger, catalog: Catalog, *, actor: str, reason: str | None = None
) -> list[PriceChange]:
    """Syncs the price book to ``catalog`` and audits what changed (call it at startup)."""
    return await ledger.reports.sync_prices(price_rows(catalog), actor=actor, reason=reason)


@dataclass(frozen=True)
class Reloaded:
    """What a reload did: the catalog now in force, the digest it replaced, what changed."""

    catalog: Catalog
    previous_digest: str
    changes: list[PriceChange]


async def reload(services: Services, *, actor: str, reason: str | None = None) -> Reloaded:
    """Re-reads models.yaml. Raises Unprocessable (422) with the file's error, keeping the old
    prices, when the file is invalid."""
    before = services.catalog
    try:
        services.reload_catalog()
    except CatalogError as exc:
        await services.ledger.audit.record_audit(
            AuditEvent(
                actor=actor,
                action="models.reload_failed",
                target=str(services.settings.models_path),
                reason=reason,
                details={"error": str(exc), "digest": before.digest},
            )
        )
        raise Unprocessable(
            f"models file refused, prices unchanged: {exc}", code="invalid_models_file"
        ) from exc
    changes: list[PriceChange] = []
    catalog = services.catalog
    while True:
        changes += await record_prices(services.ledger, catalog, actor=actor, reason=reason)
        # A concurrent reload may have swapped in another file while we wrote: sync again so
        # the book ends equal to what this process charges.
        if services.catalog is catalog:
            break
        catalog = services.catalog
    await services.ledger.audit.record_audit(
        AuditEvent(
            actor=actor,
            action="models.reload",
            target=catalog.source,
            reason=reason,
            details={
                "digest": {"old": before.digest, "new": catalog.digest},
                "changed": [c.model for c in changes],
            },
        )
    )
    return Reloaded(catalog=catalog, previous_digest=before.digest, changes=changes)


def install_sighup(services: Services) -> Callable[[], None]:
    """Makes SIGHUP reload models.yaml (logged, audited as actor ``sighup``); returns the
    uninstaller. Signal handlers belong to the main thread: elsewhere (an embedded test server)
    this does nothing."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGHUP"):
        return lambda: None
    loop = asyncio.get_running_loop()
    running: set[asyncio.Task[None]] = set()

    def on_hup() -> None:
        task = loop.create_task(_reload_logged(services))
        running.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(running.discard)

    def uninstall() -> None:
        loop.remove_signal_handler(signal.SIGHUP)

    loop.add_signal_handler(signal.SIGHUP, on_hup)
    return uninstall


async def _reload_logged(services: Services) -> None:
    try:
        result = await reload(services, actor="sighup", reason="SIGHUP")
    except Unprocessable as exc:
        log.error("SIGHUP: %s", exc.message)
    except Exception:
        log.exception("SIGHUP: models reload failed")
    else:
        log.info(
            "SIGHUP: models reloaded (%d models, %d changed, digest %s)",
            len(result.catalog.models),
            len(result.changes),
            result.catalog.digest,
        )
