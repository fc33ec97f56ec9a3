"""`gateway` command line: thin; the same services as the HTTP API.

Account commands (users, keys, credits, usage) talk to a running gateway's admin API by
default (GATEWAY_URL, default http://127.0.0.1:8080, with GATEWAY_ADMIN_KEY), or to the
database directly with --direct. Both print the same answers; --json prints them raw.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

import orjson

from gateway.settings import Settings, SettingsError


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        sys.exit(2)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        sys.exit(f"gateway: {exc}")
    args.run(args, settings)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")

    p = sub.add_parser("serve", help="run the gateway")
    p.add_argument("--demo", action="store_true",
                   help="start the mock upstream, create a demo user with $10 and print a key")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--workers", type=int, default=1,
                   help="processes (needs PostgreSQL and Redis)")
    p.set_defaults(run=_serve)

    p = sub.add_parser("migrate", help="apply database migrations and exit")
    p.set_defaults(run=_migrate)

    p = sub.add_parser("mock-upstream", help="run the built-in fake OpenAI server")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9009)
    p.set_defaults(run=_mock)

    p = sub.add_parser("models", help="models.yaml tools")
    msub = p.add_subparsers(dest="models_command", required=True)
    c = msub.add_parser("check", help="validate a models file")
    c.add_argument("path", nargs="?")
    c.set_defaults(run=_models_check)

    def account_parser(name: str, help_: str) -> argparse._SubParsersAction:
        p = sub.add_parser(name, help=help_)
        return p.add_subparsers(dest=f"{name}_command", required=True)

    users = account_parser("users", "create and show users")
    c = _op(users.add_parser("create"), "create_user")
    c.add_argument("--id")
    c.add_argument("--email")
    c.add_argument("--credit", dest="initial_credit", help="initial credit in USD, e.g. 10.00")
    c = _op(users.add_parser("show"), "get_user")
    c.add_argument("user_id")

    keys = account_parser("keys", "create, list and revoke API keys")
    c = _op(keys.add_parser("create"), "create_key")
    c.add_argument("user_id")
    c.add_argument("--name")
    c = _op(keys.add_parser("list"), "list_keys")
    c.add_argument("user_id")
    c = _op(keys.add_parser("revoke"), "revoke_key")
    c.add_argument("key_id")

    credits = account_parser("credits", "add credit")
    c = _op(credits.add_parser("add"), "add_credit")
    c.add_argument("user_id")
    c.add_argument("amount", help="USD, e.g. 25.00")
    c.add_argument("--reason")

    c = _op(sub.add_parser("usage", help="a user's usage records, newest first"), "usage")
    c.add_argument("user_id")
    c.add_argument("--limit", type=int, default=50)
    c.add_argument("--offset", type=int, default=0)
    return parser


def _op(parser: argparse.ArgumentParser, action: str) -> argparse.ArgumentParser:
    parser.add_argument("--direct", action="store_true",
                        help="use the database (and Redis) directly instead of the admin API")
    parser.add_argument("--url", default=None,
                        help="gateway base URL (default $GATEWAY_URL or http://127.0.0.1:8080)")
    parser.add_argument("--json", action="store_true", help="print raw JSON")
    parser.set_defaults(run=_account, action=action)
    return parser


def _serve(args: argparse.Namespace, settings: Settings) -> None:
    from gateway import serve

    changes: dict[str, Any] = {}
    if args.host:
        changes["host"] = args.host
    if args.port:
        changes["port"] = args.port
    settings = settings.with_(**changes) if changes else settings
    if args.demo:
        serve.serve_demo(settings)
    else:
        serve.serve(settings, workers=args.workers)


def _migrate(args: argparse.Namespace, settings: Settings) -> None:
    from gateway.ledger import open_ledger

    async def run() -> None:
        ledger = await open_ledger(settings.database_url)
        await ledger.close()

    asyncio.run(run())
    print("migrations applied")


def _mock(args: argparse.Namespace, settings: Settings) -> None:
    from gateway import mock_upstream

    print(f"mock upstream on http://{args.host}:{args.port}/v1", flush=True)
    mock_upstream.main(args.host, args.port)


def _models_check(args: argparse.Namespace, settings: Settings) -> None:
    from pathlib import Path

    from gateway import catalog

    path = Path(args.path) if args.path else settings.models_path
    try:
        loaded = catalog.load(path, settings.extra_env)
    except catalog.CatalogError as exc:
        sys.exit(f"gateway: {exc}")
    missing = sorted({p.api_key_env for p in loaded.providers.values()
                      if p.api_key_env and not p.api_key})
    print(f"{path}: {len(loaded.models)} models, {len(loaded.providers)} providers: ok")
    for name in missing:
        print(f"  note: {name} is not set; calls to its provider will fail")


def _account(args: argparse.Namespace, settings: Settings) -> None:
    from gateway.operator import ApiOperator, DirectOperator, Operator, OperatorError

    skip = {"command", "run", "action", "direct", "url", "json"}
    params = {k: v for k, v in vars(args).items()
              if k not in skip and not k.endswith("_command") and v is not None}

    async def run() -> Any:
        if args.direct:
            operator: Operator = DirectOperator(settings)
        else:
            url = args.url or os.environ.get("GATEWAY_URL") or "http://127.0.0.1:8080"
            operator = ApiOperator(url, settings.admin_key)
        try:
            return await operator.call(args.action, **params)
        finally:
            await operator.close()

    try:
        result = asyncio.run(run())
    except OperatorError as exc:
        sys.exit(f"gateway: {exc}")
    if args.json:
        sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(render(result))


def render(data: Any) -> str:
    """A readable table for lists, key: value lines for objects."""
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        rows = [_flat(r) for r in data["data"]]
        if not rows:
            return "(none)"
        cols = list(rows[0])
        widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in cols}
        lines = ["  ".join(c.ljust(widths[c]) for c in cols)]
        lines += ["  ".join(str(r.get(c, "")).ljust(widths[c]) for c in cols) for r in rows]
        if data.get("has_more"):
            lines.append("(more: use --offset)")
        return "\n".join(lines)
    if isinstance(data, dict):
        flat = _flat(data)
        width = max(len(k) for k in flat) if flat else 0
        return "\n".join(f"{k.ljust(width)}  {v}" for k, v in flat.items())
    return str(data)


def _flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in data.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = "" if v is None else v
    return out
