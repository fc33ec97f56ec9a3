"""The ``price`` of a model in models.yaml: unit prices per token class, long-context tiers and
per-request tool prices (README "models.yaml"), parsed exactly (``gateway.money.parse_price``:
decimal strings, never floats) into ``gateway.pricing.Price``."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from gateway.deployments import Fail
from gateway.money import MoneyError, parse_price
from gateway.pricing import Price, Tier

# The unit prices a model may set (USD per 1M tokens); README "models.yaml" says what each is.
PRICE_FIELDS = (
    "input",
    "cached_input",
    "output",
    "cache_write",
    "cache_write_1h",
    "audio_input",
    "audio_output",
)
# Tools billed per request, USD per 1,000 requests; set on the base price only (a request
# costs the same in every long-context tier).
REQUEST_PRICE_FIELDS = ("web_search",)


def price(raw: object, where: tuple[str, ...], kind: str, fail: Fail) -> Price:
    """A model's ``price`` mapping: unit prices (USD per 1M tokens, exact decimal strings,
    stored nano-USD) and long-context ``tiers``; raises ``fail(where, why)``."""
    if not isinstance(raw, dict):
        raise fail(where, 'must be a mapping like {input: "2.50", output: "10.00"}')
    base = _unit_prices(raw, where, fail, allowed={*PRICE_FIELDS, *REQUEST_PRICE_FIELDS, "tiers"})
    if kind == "chat" and base.output is None:
        raise fail((*where, "output"), "a chat model needs an output price")
    per_token = set(raw) - {"tiers", *REQUEST_PRICE_FIELDS}
    tiers = _tiers(raw.get("tiers"), (*where, "tiers"), per_token, kind, fail)
    web_search = None
    if raw.get("web_search") is not None:
        try:
            web_search = parse_price(raw["web_search"])
        except MoneyError as exc:
            raise fail((*where, "web_search"), str(exc)) from exc
    return replace(_built(base, tiers), web_search=web_search)


def _tiers(
    raw: object, where: tuple[str, ...], fields: set[str], kind: str, fail: Fail
) -> tuple[Tier, ...]:
    """Long-context tiers: ascending thresholds, each pricing the same token classes as the
    base price (so no class silently falls back to a price from another tier)."""
    if raw is None:
        return ()
    if not isinstance(raw, list) or not raw:
        raise fail(where, "must be a list like [{above_input_tokens: 200000, price: {...}}]")
    tiers: list[Tier] = []
    for i, spec in enumerate(raw):
        at = (*where, str(i))
        if not isinstance(spec, dict):
            raise fail(at, "must be a mapping with above_input_tokens and price")
        unknown = set(spec) - {"above_input_tokens", "price"}
        if unknown:
            raise fail((*at, sorted(unknown)[0]), "unknown field")
        above = spec.get("above_input_tokens")
        if isinstance(above, bool) or not isinstance(above, int) or above < 1:
            raise fail((*at, "above_input_tokens"), "must be a positive whole number of tokens")
        if tiers and above <= tiers[-1].above_input_tokens:
            raise fail((*at, "above_input_tokens"), "tiers must be in ascending order")
        raw_price = spec.get("price")
        if not isinstance(raw_price, dict):
            raise fail((*at, "price"), "must be a mapping of unit prices")
        for name in REQUEST_PRICE_FIELDS:
            if name in raw_price:
                raise fail(
                    (*at, "price", name),
                    "set on the base price only: a request costs the same in every tier",
                )
        price = _unit_prices(raw_price, (*at, "price"), fail, allowed=set(PRICE_FIELDS))
        missing = sorted(fields - set(raw_price), key=PRICE_FIELDS.index)
        if missing:
            raise fail((*at, "price", missing[0]), "the base price sets it, so every tier must")
        extra = sorted(set(raw_price) - fields, key=PRICE_FIELDS.index)
        if extra:
            raise fail((*at, "price", extra[0]), "the base price does not set it")
        if kind == "chat" and price.output is None:
            raise fail((*at, "price", "output"), "a chat model needs an output price")
        tiers.append(Tier(above, _built(price, ())))
    return tuple(tiers)


@dataclass(frozen=True)
class _Parsed:
    input: int
    output: int | None
    others: dict[str, int | None]


def _unit_prices(
    raw: dict[str, Any], where: tuple[str, ...], fail: Fail, *, allowed: set[str]
) -> _Parsed:
    unknown = set(raw) - allowed
    if unknown:
        raise fail((*where, sorted(unknown)[0]), "unknown price field")
    values: dict[str, int | None] = {}
    for part in PRICE_FIELDS:
        value = raw.get(part)
        if value is None:
            values[part] = None
            continue
        try:
            values[part] = parse_price(value)
        except MoneyError as exc:
            raise fail((*where, part), str(exc)) from exc
    given = values.pop("input")
    if given is None:
        raise fail((*where, "input"), "an input price is required")
    return _Parsed(given, values.pop("output"), values)


def _built(parsed: _Parsed, tiers: tuple[Tier, ...]) -> Price:
    o = parsed.others
    return Price(
        input=parsed.input,
        output=parsed.output or 0,
        cached_input=o["cached_input"],
        cache_write=o["cache_write"],
        cache_write_1h=o["cache_write_1h"],
        audio_input=o["audio_input"],
        audio_output=o["audio_output"],
        tiers=tiers,
    )
