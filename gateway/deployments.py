"""models.yaml: the deployments of a model, the (provider, upstream model) pairs that serve it.

Two forms, both checked here with the file, line and field at fault (README "Routing"):

    gpt-4o:                               gpt-4o:
      provider: openai                      deployments:
      upstream_model: gpt-4o-2024-08-06       - {provider: openai, upstream_model: gpt-4o-0806}
                                              - {provider: azure, priority: 2}

The one-deployment form is a list of one. ``priority`` orders fallbacks (1, the default, is
tried first); among deployments of one priority calls are shared by ``weight`` (default 1).
A model has one price whichever deployment serves it; only the provider and the name sent
upstream differ. A deployment holds the provider record itself (gateway.catalog.Provider),
typed here as any record with a name, so that this module needs nothing of the catalog.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

# Makes the catalog's error for (path of keys, message): it names the file and line.
Fail = Callable[[tuple[str, ...], str], Exception]
FIELDS = ("provider", "upstream_model", "weight", "priority")
# Far above any sensible share or fallback depth, low enough that a typo is caught.
MOST = 1_000_000


class Named(Protocol):
    @property
    def name(self) -> str: ...


P = TypeVar("P", bound=Named)


@dataclass(frozen=True)
class Deployment(Generic[P]):
    """One way to serve a model: a provider and the model's name there (``weight`` and
    ``priority`` are read by gateway.routing). ``name``: "provider/upstream_model", as usage
    records and /metrics say it."""

    provider: P
    upstream_model: str
    weight: int = 1
    priority: int = 1
    name: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", f"{self.provider.name}/{self.upstream_model}")


def read(
    spec: Mapping[str, Any],
    model: str,
    where: tuple[str, ...],
    providers: Mapping[str, P],
    fail: Fail,
) -> tuple[Deployment[P], ...]:
    """The deployments a model entry names, highest priority first (listed order among
    equals); raises ``fail(...)`` for a bad entry."""
    listed = spec.get("deployments")
    if listed is None:
        return (_one(spec, model, where, providers, fail, single=True),)
    if "provider" in spec or "upstream_model" in spec:
        key = "provider" if "provider" in spec else "upstream_model"
        raise fail((*where, key), "give either provider (one deployment) or deployments")
    at = (*where, "deployments")
    if not isinstance(listed, list) or not listed:
        what = "must list at least one deployment" if listed == [] else "must be a list"
        raise fail(at, f"{what}, like [{{provider: openai, upstream_model: gpt-4o}}]")
    found: list[Deployment[P]] = []
    for i, entry in enumerate(listed):
        place = (*at, str(i))
        if not isinstance(entry, dict):
            raise fail(place, "must be a mapping with provider (and upstream_model)")
        unknown = set(entry) - set(FIELDS)
        if unknown:
            raise fail((*place, sorted(unknown)[0]), f"unknown field (known: {', '.join(FIELDS)})")
        one = _one(entry, model, place, providers, fail, single=False)
        if any(d.name == one.name for d in found):
            raise fail(place, f"{one.name} is listed twice")
        found.append(one)
    return tuple(sorted(found, key=lambda d: d.priority))


def _one(
    entry: Mapping[str, Any],
    model: str,
    where: tuple[str, ...],
    providers: Mapping[str, P],
    fail: Fail,
    *,
    single: bool,
) -> Deployment[P]:
    provider = entry.get("provider")
    if provider is None:
        hint = " (or a deployments list)" if single else ""
        raise fail((*where, "provider"), f"missing: name one of the providers{hint}")
    if not isinstance(provider, str) or provider not in providers:
        raise fail((*where, "provider"), f"unknown provider {provider!r}")
    upstream = entry.get("upstream_model", model)
    if not isinstance(upstream, str) or not upstream:
        raise fail((*where, "upstream_model"), "must be a model name")
    return Deployment(
        providers[provider],
        upstream,
        _whole(entry.get("weight", 1), (*where, "weight"), fail),
        _whole(entry.get("priority", 1), (*where, "priority"), fail),
    )


def _whole(raw: object, where: tuple[str, ...], fail: Fail) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= MOST:
        raise fail(where, f"must be a whole number from 1 to {MOST}")
    return raw
