"""A gateway in front of a scripted upstream (tests/support/scripted.py): for crafted answers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.gateway import GatewayFactory, RunningGateway
from tests.support.scripted import ScriptedUpstream


@pytest.fixture(scope="module")
def scripted() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream() as upstream:
        yield upstream


@pytest.fixture
def scripted_gw(
    gateways: GatewayFactory, scripted: ScriptedUpstream, tmp_path: Path
) -> RunningGateway:
    """An embedded gateway whose models (`m`, `emb`, `w`, `grok`) are served by ``scripted``."""
    scripted.routes.clear()
    scripted.seen.clear()
    return gateways.start(GATEWAY_MODELS=str(scripted.models_file(tmp_path)))
