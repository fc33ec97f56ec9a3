"""The price book's rows (table ``model_prices``): how a model's prices are stored (nano-USD
integers; long-context tiers as a JSON list of integers, never a float), shown (USD decimal
strings, as the price-change audit events keep them) and diffed when models.yaml is synced."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from gateway.ledger.database import Row
from gateway.money import format_usd
from gateway.records import AuditEvent
from gateway.report_records import PriceChange, PriceRow, PriceTier

PRICE_COLUMNS = (
    "model",
    "provider",
    "upstream_model",
    "kind",
    "max_output_tokens",
    "price_input",
    "price_cached_input",
    "price_output",
    "price_cache_write",
    "price_cache_write_1h",
    "price_audio_input",
    "price_audio_output",
    "price_tiers",
    "price_web_search",
    "updated_at",
)
UPSERT_PRICE = (
    f"INSERT INTO model_prices ({', '.join(PRICE_COLUMNS)})"
    f" VALUES ({', '.join(f'${i}' for i in range(1, len(PRICE_COLUMNS) + 1))})"
    " ON CONFLICT (model) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in PRICE_COLUMNS[1:])
)
# A tier's classes in the order price_tiers stores them (JSON: nano-USD integers or null).
TIER_FIELDS = (
    "input",
    "output",
    "cached_input",
    "cache_write",
    "cache_write_1h",
    "audio_input",
    "audio_output",
)
# The optional classes of a price, as price_details shows them (USD decimal strings).
OPTIONAL_PRICES = ("cached_input", "cache_write", "cache_write_1h", "audio_input", "audio_output")


def price(r: Row) -> PriceRow:
    return PriceRow(
        model=r["model"],
        provider=r["provider"],
        upstream_model=r["upstream_model"],
        kind=r["kind"],
        max_output_tokens=r["max_output_tokens"],
        input=r["price_input"],
        cached_input=r["price_cached_input"],
        output=r["price_output"],
        cache_write=r["price_cache_write"],
        cache_write_1h=r["price_cache_write_1h"],
        audio_input=r["price_audio_input"],
        audio_output=r["price_audio_output"],
        tiers=_tiers_of(r["price_tiers"]),
        web_search=r["price_web_search"],
    )


def tiers_json(tiers: Sequence[PriceTier]) -> str | None:
    """Tiers as stored in price_tiers: a JSON list (None when there are none), so one column
    holds any number of them; integers only, no float ever reaches it."""
    if not tiers:
        return None
    return json.dumps(
        [[t.above_input_tokens, *(getattr(t, f) for f in TIER_FIELDS)] for t in tiers]
    )


def _tiers_of(stored: str | None) -> tuple[PriceTier, ...]:
    if not stored:
        return ()
    return tuple(
        PriceTier(row[0], **dict(zip(TIER_FIELDS, row[1:], strict=True)))
        for row in json.loads(stored)
    )


def price_details(row: PriceRow) -> dict[str, Any]:
    """A model and its prices (USD per 1M tokens, decimal strings) as price-change audit
    events store it; GET /admin/models shows the same shape (``gateway.views.price_view``).
    Classes without a price of their own are left out; ``tiers`` only when there are some."""
    price: dict[str, Any] = _prices(row)
    if row.tiers:
        price["tiers"] = [
            {"above_input_tokens": t.above_input_tokens, "price_per_1m_tokens": _prices(t)}
            for t in row.tiers
        ]
    return {
        "id": row.model,
        "provider": row.provider,
        "upstream_model": row.upstream_model,
        "kind": row.kind,
        "max_output_tokens": row.max_output_tokens,
        "price_per_1m_tokens": price,
        **(
            {"price_per_1k_requests": {"web_search": format_usd(row.web_search)}}
            if row.web_search is not None
            else {}
        ),
    }


def _prices(p: PriceRow | PriceTier) -> dict[str, str]:
    shown = {"input": format_usd(p.input), "output": format_usd(p.output)}
    for name in OPTIONAL_PRICES:
        value = getattr(p, name)
        if value is not None:
            shown[name] = format_usd(value)
    return shown


def diff_prices(
    book: Iterable[PriceRow], prices: Sequence[PriceRow], *, actor: str, reason: str | None
) -> list[PriceChange]:
    """What syncing ``book`` to ``prices`` changes, each with its audit event
    (``price.set`` for a new model, ``price.change``, ``price.remove``)."""
    old = {row.model: row for row in book}
    new = {row.model: row for row in prices}
    changes: list[PriceChange] = []
    for name in sorted(old.keys() | new.keys()):
        before, after = old.get(name), new.get(name)
        if before == after:
            continue
        action = (
            "price.set" if before is None else "price.remove" if after is None else "price.change"
        )
        event = AuditEvent(
            actor=actor,
            action=action,
            target=name,
            reason=reason,
            details={
                "old": price_details(before) if before else None,
                "new": price_details(after) if after else None,
            },
        )
        changes.append(PriceChange(model=name, old=before, new=after, events=[event]))
    return changes
