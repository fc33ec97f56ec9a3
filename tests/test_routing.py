"""gateway.routing without sockets: the choice of deployment, cooldowns, backoff and Retry-After,
on a clock and a sleep the test drives."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict

from gateway.catalog import Model, Provider
from gateway.deployments import Deployment
from gateway.errors import UpstreamError, UpstreamTimeout
from gateway.pricing import Price
from gateway.routing import (
    RATE_LIMITED,
    SERVER_ERROR,
    TIMEOUT,
    UNREACHABLE,
    Failure,
    Policy,
    Router,
    failure,
    failure_of,
    retry_after,
)

PRICE = Price(10**9, 10**10)


def deployment(name: str, weight: int = 1, priority: int = 1) -> Deployment:
    return Deployment(Provider(name, f"http://{name}"), f"up-{name}", weight, priority)


def model(*deployments: Deployment) -> Model:
    first = deployments[0]
    return Model("m", first.provider, first.upstream_model, PRICE, deployments=deployments)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class Seen:
    def __init__(self) -> None:
        self.attempts: list[tuple[str, str]] = []
        self.fallbacks: list[tuple[str, str]] = []

    def attempted(self, model: str, deployment: str, result: str) -> None:
        self.attempts.append((deployment, result))

    def fell_back(self, model: str, failed: str, to: str) -> None:
        self.fallbacks.append((failed, to))


def router(clock: Clock, seen: Seen | None = None, seed: int = 7, **policy: float) -> Router:
    return Router(
        Policy(**policy),  # type: ignore[arg-type]
        seen or Seen(),
        clock=clock,
        sleep=clock.sleep,
        rng=random.Random(seed),
    )


A, B, C = deployment("a"), deployment("b", priority=2), deployment("c", priority=3)
DOWN = Failure(SERVER_ERROR)


def test_only_429_and_5xx_answers_are_failures() -> None:
    assert failure(429, {}) == Failure(RATE_LIMITED)
    for status in (500, 502, 503, 504, 529, 599):
        assert failure(status, {}) == Failure(SERVER_ERROR)
    for status in (200, 201, 400, 401, 403, 404, 408, 409, 413, 422, 600):
        assert failure(status, {}) is None


def test_errors_are_failures_by_kind() -> None:
    assert failure_of(UpstreamTimeout("slow")) == Failure(TIMEOUT)
    assert failure_of(UpstreamError("gone")) == Failure(UNREACHABLE)


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"Retry-After-Ms": "250"}, 0.25),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),  # milliseconds win
        ({"retry-after-ms": "soon", "retry-after": "9"}, 9.0),
        ({"retry-after": "-3"}, 0.0),
        ({"retry-after": "soon"}, None),
        ({"retry-after": "nan"}, None),
        ({"retry-after": "1e999"}, float("inf")),
        ({}, None),
    ],
)
def test_retry_after_reads_milliseconds_then_seconds(
    headers: dict[str, str], seconds: float | None
) -> None:
    assert retry_after(CIMultiDict(headers)) == seconds


def test_retry_after_reads_an_http_date() -> None:
    now = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=90), usegmt=True)
    assert retry_after({"retry-after": later}, now=now.timestamp) == 90.0
    earlier = format_datetime(now - timedelta(seconds=90), usegmt=True)
    assert retry_after({"retry-after": earlier}, now=now.timestamp) == 0.0


def test_a_failure_carries_the_retry_after_of_its_answer() -> None:
    assert failure(503, CIMultiDict({"Retry-After": "3"})) == Failure(SERVER_ERROR, 3.0)


def test_deployments_are_tried_in_priority_order_at_once() -> None:
    clock, seen = Clock(), Seen()
    plan = router(clock, seen).plan(model(C, A, B))
    assert plan.deployment is A
    assert plan.failed(DOWN) == 0.0
    assert plan.deployment is A  # moved on only once the (zero) pause is over
    asyncio.run(plan.pause(0.0))
    assert plan.deployment is B
    assert plan.failed(Failure(UNREACHABLE)) == 0.0
    asyncio.run(plan.pause(0.0))
    assert plan.deployment is C
    plan.answered()
    assert seen.attempts == [
        ("a/up-a", SERVER_ERROR),
        ("b/up-b", UNREACHABLE),
        ("c/up-c", "answered"),
    ]
    assert seen.fallbacks == [("a/up-a", "b/up-b"), ("b/up-b", "c/up-c")]


def test_a_lone_deployment_is_retried_with_a_growing_backoff_until_attempts_run_out() -> None:
    clock = Clock()
    plan = router(clock, attempts=4, backoff=1.0, backoff_max=3.0).plan(model(A))
    waits = []
    for _ in range(3):
        wait = plan.failed(DOWN)
        assert wait is not None
        waits.append(wait)
        asyncio.run(plan.pause(wait))
        assert plan.deployment is A
    assert plan.failed(DOWN) is None
    # 1, 2, then 4 capped at 3; each less up to 25 % of jitter.
    for wait, full in zip(waits, (1.0, 2.0, 3.0), strict=True):
        assert 0.75 * full <= wait <= full


def test_every_deployment_is_tried_once_even_past_the_attempts() -> None:
    plan = router(Clock(), attempts=1).plan(model(A, B, C))
    tried = [plan.deployment]
    while (wait := plan.failed(DOWN)) is not None:
        asyncio.run(plan.pause(wait))
        tried.append(plan.deployment)
    assert tried == [A, B, C]


def test_after_every_deployment_failed_the_soonest_ready_is_retried_after_a_backoff() -> None:
    clock = Clock()
    plan = router(clock, attempts=5, backoff=0.5, cooldown=10.0).plan(model(A, B))
    assert plan.failed(DOWN) == 0.0
    asyncio.run(plan.pause(0.0))
    wait = plan.failed(DOWN)
    assert wait is not None
    assert 0.375 <= wait <= 0.5
    asyncio.run(plan.pause(wait))
    assert plan.deployment is A  # its cooldown ends first


def test_a_short_retry_after_is_waited_for_exactly() -> None:
    clock = Clock()
    plan = router(clock, retry_after_max=2.0).plan(model(A))
    assert plan.failed(Failure(RATE_LIMITED, 1.5)) == 1.5
    asyncio.run(plan.pause(1.5))
    assert clock.slept == [1.5]


def test_a_long_retry_after_ends_a_lone_deployments_call_at_once() -> None:
    plan = router(Clock(), retry_after_max=2.0).plan(model(A))
    assert plan.failed(Failure(RATE_LIMITED, 2.5)) is None


def test_a_long_retry_after_moves_the_call_to_another_deployment_and_bars_it() -> None:
    clock = Clock()
    shared = router(clock, retry_after_max=2.0, cooldown=1.0)
    plan = shared.plan(model(A, B))
    assert plan.failed(Failure(RATE_LIMITED, 60.0)) == 0.0
    asyncio.run(plan.pause(0.0))
    assert plan.deployment is B
    clock.now += 59.0
    assert shared.plan(model(A, B)).deployment is B  # A asked for 60 s, not the 1 s cooldown
    clock.now += 1.0
    assert shared.plan(model(A, B)).deployment is A


def test_a_failed_deployment_cools_down_for_other_calls_until_it_serves_again() -> None:
    clock = Clock()
    shared = router(clock, cooldown=5.0)
    first = shared.plan(model(A, B))
    first.failed(DOWN)
    assert shared.plan(model(A, B)).deployment is B
    clock.now += 5.0
    again = shared.plan(model(A, B))
    assert again.deployment is A
    again.answered()
    assert shared.cooling == {}


def test_when_every_deployment_cools_down_a_call_still_goes_to_the_soonest_ready() -> None:
    clock = Clock()
    shared = router(clock, cooldown=5.0)
    for d in (B, A):
        plan = shared.plan(model(d))
        plan.failed(DOWN)
        clock.now += 1.0
    assert shared.plan(model(A, B)).deployment is B  # failed first, so ready first


def test_cancelled_while_waiting_stays_waiting() -> None:
    async def main() -> None:
        clock = Clock()
        shared = Router(Policy(backoff=30.0), Seen(), clock=clock, rng=random.Random(1))
        plan = shared.plan(model(A))
        wait = plan.failed(DOWN)
        assert wait is not None
        task = asyncio.create_task(plan.pause(wait))
        await asyncio.sleep(0)
        assert plan.waiting
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert plan.waiting

    asyncio.run(main())


def test_one_priority_shares_calls_by_weight() -> None:
    heavy, light = deployment("h", weight=3), deployment("l", weight=1)
    shared = router(Clock(), seed=2026)
    firsts = Counter(shared.plan(model(heavy, light, B)).deployment.name for _ in range(4000))
    assert set(firsts) == {"h/up-h", "l/up-l"}  # never the lower priority while both are ready
    assert 0.72 <= firsts["h/up-h"] / 4000 <= 0.78


@given(
    weights=st.lists(st.integers(1, 5), min_size=1, max_size=4),
    priorities=st.lists(st.integers(1, 3), min_size=4, max_size=4),
    seed=st.integers(0, 2**32),
    failures=st.integers(0, 8),
)
def test_a_plan_walks_priorities_in_order_and_never_exceeds_its_attempts(
    weights: list[int], priorities: list[int], seed: int, failures: int
) -> None:
    pool = [
        deployment(f"d{i}", weight=w, priority=p)
        for i, (w, p) in enumerate(zip(weights, priorities, strict=False))
    ]
    ordered = tuple(sorted(pool, key=lambda d: d.priority))
    plan = router(Clock(), seed=seed, attempts=3).plan(model(*ordered))
    tried = [plan.deployment]
    for _ in range(failures):
        wait = plan.failed(DOWN)
        if wait is None:
            break
        asyncio.run(plan.pause(wait))
        tried.append(plan.deployment)
    budget = max(3, len(pool))
    assert len(tried) <= budget
    first_round = tried[: len(pool)]
    assert [d.priority for d in first_round] == sorted(d.priority for d in first_round)
    assert len(set(first_round)) == len(first_round)  # each once before any is tried again


def test_without_cooldown_a_call_still_moves_on_from_what_failed_in_it() -> None:
    plan = router(Clock(), cooldown=0.0).plan(model(A, B))
    assert plan.failed(DOWN) == 0.0
    asyncio.run(plan.pause(0.0))
    assert plan.deployment is B


def test_an_absurd_retry_after_bars_a_deployment_an_hour_at_most() -> None:
    clock = Clock()
    shared = router(clock)
    shared.plan(model(A)).failed(Failure(RATE_LIMITED, float("inf")))
    clock.now += 3599.0
    assert shared.plan(model(A, B)).deployment is B
    clock.now += 1.0
    assert shared.plan(model(A, B)).deployment is A
