"""Usage exports over HTTP: ``GET /admin/usage/export`` (admin key; ``user`` filters) and
``GET /me/usage/export`` (the caller's own records), streamed (gateway/exports.py)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from gateway.auth import check_admin
from gateway.errors import NotFound
from gateway.exports import ExportQuery, export_lines, export_query
from gateway.services import Services
from gateway.web import services_of


def export_routes() -> list[Route]:
    return [
        Route("/admin/usage/export", admin_export, methods=["GET"]),
        Route("/me/usage/export", my_export, methods=["GET"]),
    ]


async def admin_export(request: Request) -> Response:
    services = services_of(request)
    await check_admin(
        services.settings.admin_key, request.headers.get("authorization"), services.auth
    )
    params = dict(request.query_params)
    user_id = params.get("user") or None
    query = export_query(params, user_id=user_id)
    if user_id is not None and await services.ledger.directory.get_user(user_id) is None:
        raise NotFound(f"no user {user_id!r}", code="user_not_found")
    return _streamed(services, query)


async def my_export(request: Request) -> Response:
    services = services_of(request)
    key = await services.auth.authenticate(request.headers.get("authorization"))
    return _streamed(services, export_query(dict(request.query_params), user_id=key.user_id))


def _streamed(services: Services, query: ExportQuery) -> Response:
    # Every check ran above: once the first byte is sent, an error can only cut the stream.
    return StreamingResponse(
        export_lines(services.ledger, query),
        media_type=query.media_type,
        headers={"content-disposition": f'attachment; filename="{query.filename}"'},
    )
