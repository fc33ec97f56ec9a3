"""Shared fixtures: a real mock upstream over sockets, a real gateway on a free port, and
private PostgreSQL/Redis servers (tests/support)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from gateway.mock.runner import MockUpstreamThread
from tests.support.gateway import GatewayFactory, RunningGateway

pytest_plugins = ["tests.support.fixtures", "tests.support.cluster"]

# Property tests check what holds, never how fast: a loaded 2-core CI machine must not turn a
# slow example into a failure (hypothesis' default deadline is 200 ms per example).
settings.register_profile("gateway", deadline=None)
settings.load_profile("gateway")


@pytest.fixture(scope="session")
def upstream() -> Iterator[MockUpstreamThread]:
    with MockUpstreamThread() as mock:
        yield mock


@pytest.fixture
def gateways(upstream: MockUpstreamThread, tmp_path: Path) -> Iterator[GatewayFactory]:
    upstream.clear()
    factory = GatewayFactory(upstream, tmp_path)
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture
def gw(gateways: GatewayFactory) -> RunningGateway:
    """One embedded-mode gateway (SQLite in tmp_path, in-process balances)."""
    return gateways.start()
