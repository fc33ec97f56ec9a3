"""Provider keys the environment leaves unset (README "Configuration", provider keys).

A provider whose ``api_key_env`` variable is unset or empty is never sent a call: a
deployment on it is passed over while another deployment of the model has its key; a model
none of whose deployments has one is refused before anything is reserved (503
``provider_not_configured``, naming the variables, never a key) and is not listed in
``/v1/models``; the gateway says so once at start. Typed by the attributes it reads, so the
catalog (whose records these are) can use it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol, TypeVar

from gateway.errors import ProviderNotConfigured


class Keyed(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def api_key_env(self) -> str | None: ...
    @property
    def api_key(self) -> str | None: ...


class Served(Protocol):
    @property
    def provider(self) -> Keyed: ...


class Deployed(Protocol):
    @property
    def deployments(self) -> Sequence[Served]: ...


D = TypeVar("D", bound=Served)


def missing(provider: Keyed) -> str | None:
    """The variable ``provider.api_key_env`` names, when it is unset or empty."""
    return provider.api_key_env if provider.api_key_env and not provider.api_key else None


def unset(model: Deployed) -> tuple[str, ...]:
    """The unset variables that leave ``model`` no deployment to serve it; () when one can."""
    names = [missing(d.provider) for d in model.deployments]
    return () if None in names else tuple(dict.fromkeys(n for n in names if n))


def require(name: str, model: Deployed) -> None:
    """Raises ProviderNotConfigured (503) when no deployment of ``model`` can be sent."""
    variables = unset(model)
    if variables:
        verb = "is" if len(variables) == 1 else "are"
        raise ProviderNotConfigured(
            f"model `{name}` cannot be served: {' and '.join(variables)} {verb} not set on "
            "the gateway",
            param="model",
        )


def keyed(deployments: Sequence[D]) -> Sequence[D]:
    """The deployments whose provider has its key, or all of them when none has (the call
    is then refused by ``require`` before it gets this far)."""
    if len(deployments) == 1:
        return deployments
    usable = [d for d in deployments if missing(d.provider) is None]
    return deployments if len(usable) in (0, len(deployments)) else usable


def warn_unset(
    providers: Iterable[Keyed], models: Mapping[str, Deployed], log: logging.Logger
) -> None:
    """One warning per unset variable: the providers never called, the models left out."""
    for variable in dict.fromkeys(n for n in map(missing, providers) if n):
        gone = [name for name, model in models.items() if variable in unset(model)]
        shown = ", ".join(gone[:5]) + (f" and {len(gone) - 5} more" if len(gone) > 5 else "")
        log.warning(
            "%s is not set: its provider is never called; %d models (%s) have no other "
            "deployment, are not listed in /v1/models and answer 503 provider_not_configured",
            variable,
            len(gone),
            shown or "none",
        )
