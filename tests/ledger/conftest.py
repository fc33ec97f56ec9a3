"""The ledger contract runs every scenario on SQLite (a file in tmp_path) and on PostgreSQL (a
fresh database on the private server of tests/support)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.ledger.books import Contract


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.production)])
def contract(request: pytest.FixtureRequest, tmp_path: Path) -> Contract:
    if request.param == "sqlite":
        return Contract("sqlite", f"sqlite:///{tmp_path / 'ledger.db'}")
    dsn: str = request.getfixturevalue("pg_dsn")
    return Contract("postgres", dsn)
