"""The dashboard's routes (filled in by the dashboard's pages)."""

from __future__ import annotations

from starlette.routing import BaseRoute


def routes() -> list[BaseRoute]:
    return []
