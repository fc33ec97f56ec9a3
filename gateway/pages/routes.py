"""The foundation's own routes: the static files (site.css, small scripts, the icon) at
/static, and /favicon.ico (asked for by browsers showing a page that names no icon, such as
a JSON answer).

The portal's and the dashboard's routes are registered beside these in gateway/app.py
(``portal.routes()``, ``dashboard.routes()``): collecting them here would make gateway.pages
and the packages built on it import each other.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"


def page_routes() -> list[BaseRoute]:
    return [
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
        Route("/favicon.ico", favicon, methods=["GET", "HEAD"]),
    ]


async def favicon(request: Request) -> Response:
    return FileResponse(
        STATIC / "favicon.ico",
        media_type="image/x-icon",
        headers={"cache-control": "public, max-age=86400"},
    )
