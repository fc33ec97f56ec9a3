"""The portal's storage contract runs on SQLite and PostgreSQL (tests/ledger/books.py)."""

from __future__ import annotations

import pytest

from tests.ledger.books import Contract
from tests.support.fixtures import Database


@pytest.fixture
def contract(database: Database) -> Contract:
    return Contract(database.kind, database.url)
