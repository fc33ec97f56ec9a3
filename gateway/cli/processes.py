"""The `gateway` commands that run a process or check a file rather than perform an operator
action: serve (and --demo), migrate, mock-upstream, models check."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from gateway.settings import Settings


def serve(args: argparse.Namespace, settings: Settings) -> None:
    from gateway import demo, serve

    changes: dict[str, Any] = {}
    if args.host:
        changes["host"] = args.host
    if args.port:
        changes["port"] = args.port
    settings = settings.with_(**changes) if changes else settings
    if args.demo:
        demo.serve_demo(settings)
    else:
        serve.serve(settings, workers=args.workers)


def migrate(args: argparse.Namespace, settings: Settings) -> None:
    from gateway.ledger import open_ledger

    async def run() -> None:
        ledger = await open_ledger(settings.database_url)
        await ledger.close()

    asyncio.run(run())
    print("migrations applied")


def mock(args: argparse.Namespace, settings: Settings) -> None:
    from gateway.mock import runner as mock_runner

    print(f"mock upstream on http://{args.host}:{args.port}/v1", flush=True)
    mock_runner.main(args.host, args.port)


def models_check(args: argparse.Namespace, settings: Settings) -> None:
    from gateway import catalog

    path = Path(args.path) if args.path else settings.models_path
    try:
        loaded = catalog.load(path, settings.extra_env)
    except catalog.CatalogError as exc:
        sys.exit(f"gateway: {exc}")
    missing = sorted(
        {p.api_key_env for p in loaded.providers.values() if p.api_key_env and not p.api_key}
    )
    print(f"{path}: {len(loaded.models)} models, {len(loaded.providers)} providers: ok")
    for name in missing:
        print(f"  note: {name} is not set; calls to its provider will fail")
