"""Serving: uvicorn with graceful shutdown, and the --demo setup (mock model, demo user, key)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import sys
from pathlib import Path
from types import FrameType
from urllib.parse import urlparse

import uvicorn

from gateway import catalog as catalog_mod
from gateway.accounts import Accounts
from gateway.app import create_app
from gateway.auth import hash_key
from gateway.errors import Conflict
from gateway.ledger import open_ledger
from gateway.metering.modes import check_durability
from gateway.metering.redis_store import connect
from gateway.metering.store import MemoryStore
from gateway.settings import Settings, SettingsError

DEMO_USER = "demo"
DEMO_CREDIT = "10.00"
DEMO_MODEL = "demo"


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
    _refuse_volatile_redis(settings)
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
    catalog = _load_catalog(settings)
    GracefulServer(uvicorn_config(create_app(settings, catalog=catalog), settings)).run()


def _refuse_volatile_redis(settings: Settings) -> None:
    """One clear line instead of a startup traceback (the app checks again when it opens
    metering, which also covers ``from_env`` workers)."""
    if settings.redis_url is None or settings.allow_volatile_redis:
        return

    async def check(url: str) -> None:
        redis = connect(url)
        try:
            await check_durability(redis)
        finally:
            await redis.aclose()

    try:
        asyncio.run(check(settings.redis_url))
    except SettingsError as exc:
        sys.exit(f"gateway: {exc}")


def _load_catalog(settings: Settings) -> catalog_mod.Catalog:
    try:
        return catalog_mod.load(settings.models_path, settings.extra_env)
    except catalog_mod.CatalogError as exc:
        sys.exit(f"gateway: {exc}")


def serve_demo(settings: Settings) -> None:
    if settings.admin_key is None:
        settings = settings.with_(admin_key="adm-" + secrets.token_urlsafe(24))
    catalog = _load_catalog(settings)
    model = catalog.models.get(DEMO_MODEL)
    if model is None:
        sys.exit(f"gateway: --demo needs a model named {DEMO_MODEL!r} in {settings.models_path}")
    key = asyncio.run(_seed_demo(settings))
    upstream = urlparse(model.provider.base_url)
    asyncio.run(
        _run_with_mock(
            settings, catalog, upstream.hostname or "127.0.0.1", upstream.port or 80, key
        )
    )


async def _seed_demo(settings: Settings) -> str:
    """Creates the demo user once, and a demo key once (kept in a 0600 file beside the db)."""
    ledger = await open_ledger(settings.database_url)
    try:
        accounts = Accounts(ledger, MemoryStore(ledger.journal.balance))
        with contextlib.suppress(Conflict):
            await accounts.create_user(
                user_id=DEMO_USER,
                email="demo@example.com",
                initial_credit=DEMO_CREDIT,
                actor="demo",
            )
        key_file = _demo_key_file(settings)
        if key_file.exists():
            saved = key_file.read_text().strip()

            found = await ledger.directory.find_key(hash_key(saved))
            if found and found[0].revoked_at is None:
                return saved
        fresh, _ = await accounts.create_key(DEMO_USER, name="demo", actor="demo")
        key_file.write_text(fresh.key + "\n")
        os.chmod(key_file, 0o600)
        return fresh.key
    finally:
        await ledger.close()


def _demo_key_file(settings: Settings) -> Path:
    db = settings.database_url.removeprefix("sqlite:///")
    return Path((db if db not in ("", ":memory:") else "gateway.db") + ".demo-key")


async def _run_with_mock(
    settings: Settings, catalog: catalog_mod.Catalog, host: str, port: int, key: str
) -> None:
    from gateway.mock import runner as mock_runner

    runner, _ = await mock_runner.start(host, port)
    base = f"http://{settings.host}:{settings.port}"
    print(
        DEMO_BANNER.format(base=base, key=key, admin=settings.admin_key, model=DEMO_MODEL),
        flush=True,
    )
    try:
        await GracefulServer(
            uvicorn_config(create_app(settings, catalog=catalog), settings)
        ).serve()
    finally:
        await runner.cleanup()


DEMO_BANNER = """
  Metering gateway demo at {base}
    demo user: demo ($10.00 of credit)     model: {model} (built-in mock upstream)
    key:       {key}
    admin key: {admin}

  Try it:
    python - <<'PY'
    from openai import OpenAI
    client = OpenAI(base_url="{base}/v1", api_key="{key}")
    reply = client.chat.completions.create(
        model="{model}", messages=[{{"role": "user", "content": "Say hello"}}])
    print(reply.choices[0].message.content)
    PY
    curl -s {base}/me -H "Authorization: Bearer {key}"
"""
