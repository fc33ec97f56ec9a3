"""``PageExit``: how a page helper (``require_operator``, ``check_csrf``) ends the request with
a ready response (a 303 to the sign-in page, a 403 page) from any depth of a handler."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response


class PageExit(Exception):
    """Raised with the response to send instead of the page; app.py registers ``page_exit``
    as its handler."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


async def page_exit(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PageExit)
    return exc.response
