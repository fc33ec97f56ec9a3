"""The database handle the repositories run on: one per dialect (sqlite.py, postgres.py).

Statements are written once, in PostgreSQL's notation: ``$1, $2, ...`` placeholders (a
parameter may appear several times), and a ``::type`` cast right after a parameter where
PostgreSQL cannot infer its type; SQLite reads ``$n`` as ``?n`` and drops the cast (its
columns are dynamically typed). Both dialects take and return the same Python values:

- rows are mappings of column name to value;
- timestamps are timezone-aware UTC ``datetime`` both ways (SQLite stores UTC text: by the
  schema's convention every column named ``*_at`` or ``*_since`` holds one);
- integers are ``int`` (PostgreSQL's ``numeric`` sums arrive as ``Decimal``: ``int()`` them).

Guarantees: a statement run on the ``Database`` itself is atomic and committed on return;
the statements run on a ``Transaction`` commit together when its block exits normally and
roll back when it raises. Inside a transaction use only the transaction (on SQLite the
database's own statements wait for it to end). ``read`` is for long read-only statements
(reports): it sees a committed snapshot and may run beside the writes, never delaying them.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

Row = Mapping[str, Any]


class Statements(Protocol):
    async def fetch(self, sql: str, *args: Any) -> list[Row]: ...

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        """The first row, or None when there is none."""

    async def execute(self, sql: str, *args: Any) -> None: ...


class Transaction(Statements, Protocol):
    async def lock(self, name: str) -> None:
        """Serialises this transaction with every other one taking the same lock, in any
        process, until commit (PostgreSQL: an advisory lock; SQLite: a no-op, since its write
        transactions already exclude each other)."""


class Database(Statements, Protocol):
    """One database: its connection(s), migrations and lifecycle."""

    async def open(self) -> None:
        """Connects and applies the migrations not yet applied (safe in several processes
        starting at once)."""

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raises when the database cannot answer."""

    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        """A write transaction: ``async with db.transaction() as tx: ...``."""

    async def read(self, sql: str, *args: Any) -> list[Row]:
        """A read-only statement on a committed snapshot, possibly beside the writes."""
