"""Operator-surface fixtures: a database parametrized over SQLite and PostgreSQL for the
contract tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.ledger.base import Ledger
from gateway.ledger.postgres import PostgresLedger
from gateway.ledger.sqlite import SqliteLedger


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.production)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A GATEWAY_DATABASE_URL: a SQLite file, or a fresh database on the private PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/ledger.db"
    dsn: str = request.getfixturevalue("pg_dsn")
    return dsn


@pytest.fixture
def make_ledger(database_url: str) -> Callable[[], Ledger]:
    """A factory of unopened ledgers (with the reports port) on that database."""
    if database_url.startswith("sqlite:///"):
        path = database_url.removeprefix("sqlite:///")
        return lambda: SqliteLedger(path)  # type: ignore[return-value]
    return lambda: PostgresLedger(database_url)  # type: ignore[return-value]
