"""CLI fixtures: the reporting ledgers of tests/admin/ledgers.py for gateway and CLI alike."""

from __future__ import annotations

import pytest

from tests.admin.ledgers import patch_ledgers


@pytest.fixture(autouse=True)
def reporting_ledgers(monkeypatch: pytest.MonkeyPatch) -> None:
    patch_ledgers(monkeypatch)
