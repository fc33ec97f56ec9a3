"""Serving: uvicorn with graceful shutdown, several workers, the Redis durability check (the
--demo setup is gateway/demo.py)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from types import FrameType

import uvicorn

from gateway import catalog as catalog_mod
from gateway.app import create_app
from gateway.metering.clients import DOWN
from gateway.metering.layout import LayoutMismatch, check_marker
from gateway.metering.modes import check_durability, layout_of
from gateway.metering.redis_store import connect
from gateway.settings import Settings, SettingsError


class GracefulServer(uvicorn.Server):
    """uvicorn re-raises SIGTERM after its graceful shutdown, so the process would die by the
    signal (exit -15). A drained, settled, flushed shutdown is a clean exit: exit 0."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        if sig == signal.SIGTERM:
            self._captured_signals.remove(sig)


def uvicorn_config(app: object, settings: Settings, **extra: object) -> uvicorn.Config:
    return uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=settings.host,
        port=settings.port,
        loop="uvloop" if _has("uvloop") else "asyncio",
        http="httptools" if _has("httptools") else "h11",
        lifespan="on",
        access_log=False,
        timeout_graceful_shutdown=int(settings.shutdown_grace),
        log_level="info",
        **extra,  # type: ignore[arg-type]
    )


def _has(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def serve(settings: Settings, *, workers: int = 1) -> None:
    _refuse_unfit_redis(settings)
    if workers > 1:
        if settings.redis_url is None or not settings.database_url.startswith("postgres"):
            sys.exit(
                "gateway: --workers > 1 needs GATEWAY_REDIS_URL and a postgresql:// "
                "GATEWAY_DATABASE_URL: in-process balances cannot be shared between "
                "processes, so several workers in embedded mode could overspend credit."
            )
        uvicorn.run(
            "gateway.app:from_env",
            factory=True,
            workers=workers,
            host=settings.host,
            port=settings.port,
            access_log=False,
            timeout_graceful_shutdown=int(settings.shutdown_grace),
        )
        return
    catalog = load_catalog(settings)
    GracefulServer(uvicorn_config(create_app(settings, catalog=catalog), settings)).run()


def _refuse_unfit_redis(settings: Settings) -> None:
    """One clear line instead of a startup traceback when Redis would lose balances or holds
    another key layout (the app checks again when it opens metering, which also covers
    ``from_env`` workers)."""
    if settings.redis_url is None:
        return

    async def check(url: str) -> None:
        redis = connect(url)
        try:
            if not settings.allow_volatile_redis:
                await check_durability(redis)
            # Unreachable: serve anyway, admissions answering 503 until Redis is back (README,
            # Production mode); the layout goes unchecked then, as in the store's own open.
            with contextlib.suppress(*DOWN):
                await check_marker(redis, layout_of(url, settings.redis_shards))
        finally:
            await redis.aclose()

    try:
        asyncio.run(check(settings.redis_url))
    except (SettingsError, LayoutMismatch) as exc:
        sys.exit(f"gateway: {exc}")


def load_catalog(settings: Settings) -> catalog_mod.Catalog:
    """models.yaml, or exit with its error (file, line, field) as one line."""
    try:
        return catalog_mod.load(settings.models_path, settings.extra_env)
    except catalog_mod.CatalogError as exc:
        sys.exit(f"gateway: {exc}")
