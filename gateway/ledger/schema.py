"""Schema migrations shared by the ledger implementations.

Each dialect keeps plain SQL files in ``migrations/<dialect>/NNNN_name.sql``; a database
applies, in version order, those not yet recorded in its ``schema_migrations`` table.
"""

from __future__ import annotations

from importlib import resources


def migrations(dialect: str) -> list[tuple[int, str]]:
    """``(version, sql)`` for every migration file of ``dialect``, oldest first."""
    folder = resources.files("gateway.ledger") / "migrations" / dialect
    found = sorted(
        (p for p in folder.iterdir() if p.name.endswith(".sql")),
        key=lambda p: int(p.name.split("_", 1)[0]),
    )
    return [(int(p.name.split("_", 1)[0]), p.read_text()) for p in found]
