"""The ledger contract runs every scenario on SQLite (a file in tmp_path) and on PostgreSQL (a
fresh database on the private server of tests/support)."""

from __future__ import annotations

import pytest

from tests.ledger.books import Contract
from tests.support.fixtures import Database


@pytest.fixture
def contract(database: Database) -> Contract:
    return Contract(database.kind, database.url)
