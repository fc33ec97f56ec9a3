"""Operator-surface fixtures: a database parametrized over SQLite and PostgreSQL for the
contract tests."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from gateway.ledger import open_ledger
from gateway.ledger.base import Ledger


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.production)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A GATEWAY_DATABASE_URL: a SQLite file, or a fresh database on the private PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/ledger.db"
    dsn: str = request.getfixturevalue("pg_dsn")
    return dsn


@pytest.fixture
def make_ledger(database_url: str) -> Callable[[], Awaitable[Ledger]]:
    """Opens a ledger on that database (each call a new one; close it)."""
    return lambda: open_ledger(database_url)
