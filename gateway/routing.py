"""Which deployment serves a call, and what follows a failed attempt (README "Routing").

A call is attempted again only before any byte of an answer has reached its client, and only
after a failure another attempt may cure: no connection, no answer in time, 429 or 5xx. Every
other answer is the call's answer (a 4xx is the request's fault; a 2xx is being relayed).

A ``Router`` serves every call of the process: it keeps until when each deployment is passed
over (its cooldown, after a failure) and tells an ``Observer`` (the /metrics counters) about
each attempt. A ``Plan`` is one call's walk over its model's deployments: priority groups in
turn, within a group a weighted random order drawn per call. A deployment cooling down or
already failed in this call is passed over while another is ready; the next one is then tried
at once. When none is, the one ready soonest is tried after a wait: the upstream's
``Retry-After`` when it sent one, else an exponential backoff with jitter. A ``Retry-After``
longer than ``Policy.retry_after_max`` is never slept through: the call ends with that answer.

Pure but for the cooldowns; the clock, the sleep and the random source are injected.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from gateway.catalog import Model, Provider
from gateway.deployments import Deployment
from gateway.errors import UpstreamError, UpstreamTimeout
from gateway.provider_keys import keyed
from gateway.settings import Settings

# Failure kinds (the ``result`` label of gateway_upstream_attempts_total, besides ANSWERED).
RATE_LIMITED, SERVER_ERROR, TIMEOUT, UNREACHABLE = (
    "rate_limited",
    "server_error",
    "timeout",
    "unreachable",
)
ANSWERED = "answered"
# The longest a deployment is passed over: an absurd Retry-After (a date years ahead) bars it
# an hour at most.
LONGEST_COOLDOWN = 3600.0


@dataclass(frozen=True, slots=True)
class Policy:
    """Seconds, never money. ``attempts``: most attempts per call, at least one per
    deployment of the model. ``backoff``: the wait before retrying a deployment, doubled on
    each further retry up to ``backoff_max``, less up to 25 % of jitter (as the openai SDK
    does, openai-python ``_calculate_retry_timeout``). ``cooldown``: how long a failing
    deployment is passed over (longer when its ``Retry-After`` asks for more)."""

    attempts: int = 3
    backoff: float = 0.25
    backoff_max: float = 2.0
    retry_after_max: float = 2.0
    cooldown: float = 5.0

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        return cls(
            attempts=settings.retry_attempts,
            backoff=settings.retry_backoff,
            backoff_max=settings.retry_backoff_max,
            retry_after_max=settings.retry_after_max,
            cooldown=settings.cooldown,
        )


@dataclass(frozen=True, slots=True)
class Failure:
    """An attempt another one may cure: its kind and the seconds its upstream asked to wait."""

    kind: str
    retry_after: float | None = None


def failure(status: int, headers: Mapping[str, str]) -> Failure | None:
    """The failure an upstream answer is, or None for an answer to relay as the call's."""
    if status == 429:
        return Failure(RATE_LIMITED, retry_after(headers))
    if 500 <= status <= 599:
        return Failure(SERVER_ERROR, retry_after(headers))
    return None


def failure_of(error: UpstreamError) -> Failure:
    """An upstream that could not be reached or did not answer in time."""
    return Failure(TIMEOUT if isinstance(error, UpstreamTimeout) else UNREACHABLE)


def retry_after(headers: Mapping[str, str], now: Callable[[], float] = time.time) -> float | None:
    """Seconds an answer asks to wait before the next request, or None.

    ``retry-after-ms`` (milliseconds; OpenAI's and Azure OpenAI's) first, then ``Retry-After``
    as delay-seconds or an HTTP-date (RFC 9110 §10.2.3; fractional seconds accepted, as the
    openai SDK does). ``headers`` must look names up case-insensitively (aiohttp's do).
    """
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        raw = headers.get(name)
        if raw is None:
            continue
        try:
            seconds = float(raw) * scale
        except ValueError:
            continue
        if math.isfinite(seconds):
            return max(seconds, 0.0)
        return math.inf if seconds > 0 else None
    raw = headers.get("retry-after")
    try:
        when = email.utils.parsedate_to_datetime(raw) if raw else None
    except (TypeError, ValueError):
        return None
    return None if when is None else max(when.timestamp() - now(), 0.0)


class Observer(Protocol):
    def attempted(self, model: str, deployment: str, result: str) -> None: ...

    def fell_back(self, model: str, failed: str, to: str) -> None: ...


class Router:
    """Shared by every call: the cooldowns, keyed by deployment name (so they outlive a
    catalog reload and cover every model a deployment serves)."""

    def __init__(
        self,
        policy: Policy,
        observer: Observer,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.policy = policy
        self.observer = observer
        self.clock = clock
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.cooling: dict[str, float] = {}  # deployment name -> clock() when it is ready

    def plan(self, model: Model) -> Plan:
        return Plan(self, model, self._order(keyed(model.deployments)))

    def _order(self, deployments: Sequence[Deployment[Provider]]) -> Sequence[Deployment[Provider]]:
        if len(deployments) == 1:
            return deployments
        # Weighted random order without replacement (Efraimidis & Spirakis 2006): the key
        # u ** (1 / weight) puts each deployment first with probability weight / group total.
        rand = self.rng.random
        return sorted(deployments, key=lambda d: (d.priority, -(rand() ** (1.0 / d.weight))))

    def backoff(self, retries: int) -> float:
        """Seconds before the ``retries``-th retry (1, 2, ...) of one deployment."""
        p = self.policy
        return min(p.backoff * 2.0 ** (retries - 1), p.backoff_max) * (1 - 0.25 * self.rng.random())


class Plan:
    """One call's walk over its model's deployments: ``deployment`` is the one to try now, or
    tried last. ``waiting`` is True between attempts (nothing is being produced then)."""

    __slots__ = (
        "_chosen",
        "_failed",
        "_left",
        "_order",
        "_router",
        "deployment",
        "model",
        "waiting",
    )

    def __init__(self, router: Router, model: Model, order: Sequence[Deployment[Provider]]) -> None:
        self._router = router
        self._order = order
        self._failed: dict[str, int] = {}  # deployment name -> failures in this call
        self._left = max(router.policy.attempts, len(order)) - 1  # attempts after the first
        self.model = model.name
        self.waiting = False
        self.deployment, _ = self._next()
        self._chosen = self.deployment

    def answered(self) -> None:
        """The current deployment answered: its answer is the call's."""
        name = self.deployment.name
        self._router.cooling.pop(name, None)
        self._router.observer.attempted(self.model, name, ANSWERED)

    def failed(self, failure: Failure) -> float | None:
        """Records the current deployment's failure and chooses the next one; returns the
        seconds to ``pause`` before trying it (0 for another ready deployment), or None when
        the call ends with this failure (attempts spent, or a Retry-After too long to sleep)."""
        router, policy, failed = self._router, self._router.policy, self.deployment
        router.observer.attempted(self.model, failed.name, failure.kind)
        self._failed[failed.name] = self._failed.get(failed.name, 0) + 1
        cooldown = min(max(policy.cooldown, failure.retry_after or 0.0), LONGEST_COOLDOWN)
        router.cooling[failed.name] = router.clock() + cooldown
        if self._left <= 0:
            return None
        chosen, ready = self._next()
        wait = 0.0
        if not ready:
            if failure.retry_after is not None:
                if failure.retry_after > policy.retry_after_max:
                    return None
                wait = failure.retry_after
            else:
                wait = router.backoff(max(self._failed.get(chosen.name, 0), 1))
        self._left -= 1
        if chosen is not failed:
            router.observer.fell_back(self.model, failed.name, chosen.name)
        self._chosen = chosen
        return wait

    async def pause(self, seconds: float) -> None:
        """Waits, then makes the deployment ``failed`` chose the current one. A call cancelled
        here stays ``waiting``: it ends between attempts."""
        self.waiting = True
        await self._router.sleep(seconds)
        self.waiting = False
        self.deployment = self._chosen

    def _next(self) -> tuple[Deployment[Provider], bool]:
        """The first deployment ready (not cooling, not failed in this call), else the one
        ready soonest (this call's fewest failures, then plan order, breaking ties)."""
        cooling, now = self._router.cooling, self._router.clock()
        for d in self._order:
            if d.name not in self._failed and cooling.get(d.name, 0.0) <= now:
                return d, True
        soonest = min(
            self._order,
            key=lambda d: (cooling.get(d.name, 0.0), self._failed.get(d.name, 0)),
        )
        return soonest, False
