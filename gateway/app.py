"""create_app(settings): routes, lifespan. Nothing happens at import time."""

from __future__ import annotations

import contextlib
import hmac
import logging
import time
import uuid
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway import price_reload, provider_keys
from gateway.auth import bearer
from gateway.catalog import Catalog
from gateway.dashboard import routes as dashboard
from gateway.endpoints import ENDPOINTS
from gateway.errors import GatewayError, NotFound, Unauthorized, error_body
from gateway.pages.exits import PageExit, page_exit
from gateway.pages.routes import page_routes
from gateway.portal import routes as portal
from gateway.proxy.count_tokens import CountTokens
from gateway.proxy.governance import allows
from gateway.proxy.pipeline import ProxyEndpoint
from gateway.routes import admin, exports, me, payments
from gateway.services import Services, build, shutdown
from gateway.settings import Settings
from gateway.web import error_response, json_response

log = logging.getLogger("gateway")


def create_app(settings: Settings, *, catalog: Catalog | None = None) -> GatewayApp:
    """The ASGI app. Services (ledger, store, sessions) are built in the lifespan."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        services = await build(settings, catalog=catalog)
        provider_keys.warn_unset(services.catalog.providers.values(), services.catalog.models, log)
        await price_reload.record_prices(services.ledger, services.catalog, actor="startup")
        stop_sighup = price_reload.install_sighup(services)
        app.state.services = services
        app.router.routes.extend(_routes(services))
        gateway.fast = {
            f"/v1/{path}": ProxyEndpoint(services, endpoint) for path, endpoint in ENDPOINTS.items()
        }
        try:
            yield
        finally:
            stop_sighup()
            await shutdown(services)

    async def not_found(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 404)
        message = "not found" if status == 404 else str(getattr(exc, "detail", "error"))
        kind = "not_found_error" if status == 404 else "invalid_request_error"
        return Response(
            error_body(f"{request.method} {request.url.path}: {message}", kind),
            status_code=status,
            media_type="application/json",
        )

    async def gateway_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, GatewayError)
        return error_response(exc)

    app = Starlette(
        routes=[
            *me.caller_routes(),
            *exports.export_routes(),
            *admin.action_routes(),
            *payments.payment_routes(),
            *page_routes(),
            *dashboard.routes(),
            *portal.routes(),
        ],
        lifespan=lifespan,
        exception_handlers={
            HTTPException: not_found,
            GatewayError: gateway_error,
            PageExit: page_exit,
        },
    )
    app.add_middleware(RequestIdMiddleware)
    gateway = GatewayApp(app)
    return gateway


class GatewayApp:
    """Proxy calls are dispatched by exact path before Starlette, so the hot path skips the
    middleware stack and route matching; everything else (and every other method on those
    paths) goes through Starlette."""

    def __init__(self, app: Starlette) -> None:
        self.app = app
        self.fast: dict[str, ProxyEndpoint] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            endpoint = self.fast.get(scope["path"])
            if endpoint is not None:
                await endpoint(scope, receive, send)
                return
        await self.app(scope, receive, send)


def from_env() -> GatewayApp:
    """Factory for ``uvicorn --factory`` and multi-worker serving."""
    return create_app(Settings.from_env())


class RequestIdMiddleware:
    """Every response carries x-request-id; the proxy sets its own, the rest get one here."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.get("headers") or []
                if not any(name == b"x-request-id" for name, _ in headers):
                    message["headers"] = [
                        *headers,
                        (b"x-request-id", f"req_{uuid.uuid4().hex}".encode()),
                    ]
            await send(message)

        await self.app(scope, receive, send_with_id)


def _routes(services: Services) -> list[Route]:
    started = time.time()

    async def list_models(request: Request) -> Response:
        key, owner = await services.auth.caller(request.headers.get("authorization"))
        created = int(started)
        # A model whose provider key is unset cannot serve a call, nor one the key's or its
        # owner's model list leaves out: neither is offered.
        data = [
            {"id": name, "object": "model", "created": created, "owned_by": m.provider.name}
            for name, m in services.catalog.models.items()
            if not provider_keys.unset(m) and allows(key, owner, name)
        ]
        return json_response({"object": "list", "data": data})

    async def get_model(request: Request) -> Response:
        key, owner = await services.auth.caller(request.headers.get("authorization"))
        name = request.path_params["model"]
        model = services.catalog.models.get(name)
        if model is None or provider_keys.unset(model) or not allows(key, owner, name):
            raise NotFound(f"The model `{name}` does not exist", code="model_not_found")
        return json_response(
            {
                "id": name,
                "object": "model",
                "created": int(started),
                "owned_by": model.provider.name,
            }
        )

    async def healthz(request: Request) -> Response:
        return json_response({"status": "ok"})

    async def readyz(request: Request) -> Response:
        checks: dict[str, object] = {}
        ready = True
        try:
            await services.ledger.ping()
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"down: {type(exc).__name__}"
            ready = False
        try:
            await services.store.ping()
            checks["balance_store"] = "ok" if services.settings.redis_url else "in-process"
        except Exception as exc:
            checks["balance_store"] = f"down: {type(exc).__name__}"
            ready = False
        checks["usage_backlog"] = services.writer.backlog
        checks["settle_retry_queue"] = getattr(services.store, "backlog", 0)
        if services.writer.last_error:
            checks["usage_writer"] = "degraded: " + services.writer.last_error
        checks["models"] = len(services.catalog.models)
        checks["status"] = "ok" if ready else "degraded"
        return json_response(checks, 200 if ready else 503)

    async def metrics(request: Request) -> Response:
        # Revenue per model is in there: with GATEWAY_METRICS_TOKEN set, only its bearer reads.
        token = services.settings.metrics_token
        given = bearer(request.headers.get("authorization")) or ""
        if token is not None and not hmac.compare_digest(given.encode(), token.encode()):
            raise Unauthorized("/metrics needs 'Authorization: Bearer <GATEWAY_METRICS_TOKEN>'")
        text = services.metrics.render(
            {
                "gateway_inflight_calls": services.inflight,
                "gateway_usage_backlog": services.writer.backlog,
            }
        )
        return Response(text, media_type="text/plain; version=0.0.4")

    proxied = [
        Route(f"/v1/{path}", ProxyEndpoint(services, endpoint), methods=["POST"])
        for path, endpoint in ENDPOINTS.items()
    ]
    return [
        *proxied,
        Route("/v1/messages/count_tokens", CountTokens(services), methods=["POST"]),
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/models/{model:path}", get_model, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
