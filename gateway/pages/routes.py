"""The foundation's own routes: the static files (site.css, small scripts) at /static.

The portal's and the dashboard's routes are registered beside these in gateway/app.py
(``portal.routes()``, ``dashboard.routes()``): collecting them here would make gateway.pages
and the packages built on it import each other.
"""

from __future__ import annotations

from pathlib import Path

from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"


def page_routes() -> list[BaseRoute]:
    return [Mount("/static", app=StaticFiles(directory=STATIC), name="static")]
