"""`gateway` command line: thin; the same services as the HTTP API.

Operator commands (users, keys, credits, balance, usage, stats, report, audit, models list and
reload) reach the gateway one of two ways and give the same answers:

  default    the admin API of a running gateway: $GATEWAY_URL (default http://127.0.0.1:8080)
             with $GATEWAY_ADMIN_KEY. Use it while an embedded-mode gateway runs: its
             in-process balances see every change at once.
  --direct   the database itself ($GATEWAY_DATABASE_URL; $GATEWAY_REDIS_URL in production),
             through the very functions the admin API calls. Reads are always safe; a balance
             change made this way reaches a running embedded gateway only at its next start.

--json prints the answer as the API returns it (for scripts); otherwise a readable table.
Amounts are USD decimal strings. Ranges: --from/--to take dates (whole days in --tz, both
included) or ISO datetimes ([from, to)); --tz is an IANA zone, default UTC.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from gateway.actions import ACTIONS
from gateway.cli import processes
from gateway.settings import Settings, SettingsError


def main(argv: list[str] | None = None) -> None:
    from gateway.cli.export import rewrite

    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    # `usage prune ARGS` -> `usage-prune ARGS`, as `usage export` (`usage` takes a user id).
    argv = ["usage-prune", *argv[2:]] if argv[:2] == ["usage", "prune"] else rewrite(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        sys.exit(2)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        sys.exit(f"gateway: {exc}")
    try:
        args.run(args, settings)
    except KeyboardInterrupt:
        # Ctrl-C: the server has already stopped as on SIGTERM; no traceback for it.
        sys.exit(130)
    except BrokenPipeError:
        # Output piped into a reader that stopped (`gateway report models | head`): the
        # Python docs' recipe, so the interpreter does not report it again at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(1)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gateway", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command")

    p = sub.add_parser("serve", help="run the gateway (SIGHUP reloads models.yaml)")
    p.add_argument(
        "--demo",
        action="store_true",
        help="start the mock upstream, create a demo user with $10 and print a key",
    )
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--workers", type=int, default=1, help="processes (needs PostgreSQL and Redis)")
    p.set_defaults(run=processes.serve)

    p = sub.add_parser("migrate", help="apply database migrations and exit")
    p.set_defaults(run=processes.migrate)

    p = sub.add_parser("mock-upstream", help="run the built-in fake OpenAI server")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9009)
    p.set_defaults(run=processes.mock)

    def group(name: str, help_: str) -> argparse._SubParsersAction[argparse.ArgumentParser]:
        return sub.add_parser(name, help=help_).add_subparsers(
            dest=f"{name}_command", required=True
        )

    models = group("models", "models.yaml and the prices in force")
    c = models.add_parser("check", help="validate a models file (local; no gateway needed)")
    c.add_argument("path", nargs="?")
    c.set_defaults(run=processes.models_check)
    _op(
        models.add_parser(
            "list",
            help="prices in force (API: the gateway's memory; --direct: "
            "the price book it last recorded)",
        ),
        "list_models",
    )
    c = _op(
        models.add_parser(
            "reload",
            help="re-read models.yaml in the running gateway (API only; or send it SIGHUP)",
        ),
        "reload_models",
    )
    c.add_argument("--reason")

    users = group("users", "create, show, list and search users")
    c = _op(users.add_parser("create"), "create_user")
    c.add_argument("--id")
    c.add_argument("--email")
    c.add_argument("--credit", dest="initial_credit", help="initial credit in USD, e.g. 10.00")
    _op(users.add_parser("show"), "get_user")
    c = _op(users.add_parser("list", help="users, newest first"), "list_users")
    c.add_argument("--query", help="only ids or emails containing this (any case)")
    c.add_argument("--limit", type=int, default=50)
    c.add_argument("--cursor", help="next_cursor of the previous page")

    help_ = "a one-time link to set the user's portal email and password (shown once)"
    c = _op(users.add_parser("login-link", help=help_), "login_link")
    c.add_argument("--expires-hours", dest="expires_in_hours", type=int, help="1-720 (72)")
    c = _op(users.add_parser("update", help="email, disabled, limits, models"), "update_user")
    c.add_argument("--email")
    c.add_argument("--disabled", choices=["true", "false"])
    _settings(c)

    keys = group("keys", "create, show, change, rotate, list and revoke API keys")
    c = _op(keys.add_parser("create"), "create_key")
    c.add_argument("--name")
    c.add_argument("--expires-at", dest="expires_at", help="ISO 8601, e.g. 2030-01-01T00:00Z")
    c.add_argument("--metadata", type=_json_arg, help="a JSON object kept with the key")
    _settings(c)
    _op(keys.add_parser("show", help="a key, its limits and their counters now"), "get_key")
    c = _op(keys.add_parser("update", help="change a key's settings"), "update_key")
    c.add_argument("--name")
    c.add_argument("--expires-at", dest="expires_at")
    c.add_argument("--metadata", type=_json_arg)
    _settings(c)
    c = _op(keys.add_parser("rotate", help="a new key with the same settings"), "rotate_key")
    c.add_argument(
        "--grace-seconds",
        dest="grace_seconds",
        type=int,
        default=0,
        help="how long the old key keeps working (default 0: at once)",
    )
    _op(keys.add_parser("list"), "list_keys")
    _op(keys.add_parser("revoke"), "revoke_key")

    credits = group("credits", "add credit, set a balance, credit many users")
    c = _op(credits.add_parser("add", help="add credit (a grant entry)"), "add_credit")
    c.add_argument("amount", help="USD, e.g. 25.00")
    c.add_argument("--reason")
    c.add_argument("--reference", help=REFERENCE_HELP)
    c = _op(
        credits.add_parser("set", help="set the balance (one adjustment entry for the difference)"),
        "set_balance",
    )
    c.add_argument("balance", help="USD, e.g. 0 or 12.50")
    c.add_argument("--reason")
    c.add_argument("--reference", help=REFERENCE_HELP)
    c = _op(
        credits.add_parser(
            "bulk",
            help="add the same credit to many users; each applies or fails on its own (exit "
            "status 1 naming the failed users when any failed)",
        ),
        "bulk_credit",
    )
    c.add_argument("amount", help="USD, e.g. 5.00")
    c.add_argument("user_ids", nargs="*", metavar="USER")
    c.add_argument("--file", type=Path, help="more user ids, one per line ('-' for stdin)")
    c.add_argument("--reason")
    c.add_argument("--reference", help=BULK_REFERENCE_HELP)

    _op(sub.add_parser("balance", help="a user's balance and reservations"), "get_user")

    usage = "a user's usage records, newest first (also: usage export, usage prune)"
    c = _op(sub.add_parser("usage", help=usage, description=usage), "usage")
    c.add_argument("--limit", type=int, default=50)
    c.add_argument("--offset", type=int)
    c.add_argument("--cursor", help="next_cursor of the previous page (stable while calls land)")

    c = _op(
        sub.add_parser(
            "usage-prune",
            prog="gateway usage prune",
            help="(gateway usage prune) drop the usage rows of the months before the last "
            "--keep-months (never ledger entries or report rollups); --dry-run lists them",
        ),
        "prune_usage",
    )
    c.add_argument("--keep-months", dest="keep_months", type=int, required=True, help="1-1200")
    c.add_argument("--dry-run", dest="dry_run", action="store_true", help="drop nothing")

    c = _op(sub.add_parser("entries", help="a user's ledger entries, oldest first"), "entries")
    c.add_argument("--after", type=int, help="next_after of the previous page (a version)")
    c.add_argument("--limit", type=int, default=100)

    c = _ranged(_op(sub.add_parser("stats", help="a user's totals and breakdown"), "stats"))
    _grouped(c)

    report = group("report", "revenue per day, per model, top users, usage by attribute")
    _ranged(
        _op(
            report.add_parser("revenue", help="per local day of --tz (default: last 30 days)"),
            "revenue",
        )
    )
    _ranged(
        _op(report.add_parser("models", help="per provider:model, by revenue"), "models_report")
    )
    c = _ranged(_op(report.add_parser("top-users", help="users by revenue"), "top_users"))
    c.add_argument("--limit", type=int, default=10)
    c = _ranged(
        _op(
            report.add_parser("usage", help="usage by model, key, tag, end user or session"),
            "usage_report",
        )
    )
    _grouped(c)
    c.add_argument("--user", help="only this user's calls")

    c = _op(sub.add_parser("audit", help="the operator audit trail, newest first"), "audit")
    c.add_argument("--user", help="only events about this user (or model, for price.*)")
    c.add_argument("--action", help="e.g. credits.add, balance.set, price.change")
    c.add_argument("--limit", type=int, default=50)
    c.add_argument("--offset", type=int)
    webhooks = group("webhooks", "operator alert webhooks")
    c = _op(
        webhooks.add_parser("deliveries", help="the alert outbox, newest first"),
        "webhook_deliveries",
    )
    c.add_argument("--status", help="pending, delivered or failed")
    c.add_argument("--type", help="e.g. balance.low, refund.shortfall")
    c.add_argument("--limit", type=int, default=50)
    c.add_argument("--cursor", help="next_cursor of the previous page")
    invites = group("invites", "portal invitations (GATEWAY_PORTAL_SIGNUP=invite)")
    c = _op(invites.add_parser("create", help="its link is shown once"), "create_invite")
    c.add_argument("--email", help="admit only this address")
    c.add_argument("--expires-days", dest="expires_in_days", type=int, help="1-365 (default 14)")
    _op(invites.add_parser("list", help="invitations, newest first"), "list_invites")
    from gateway.cli.export import add_cli as add_export_cli

    add_export_cli(sub)  # gateway usage export [--user] [--format] [--from] [--to]
    from gateway.billing.replay import add_cli as add_stripe_cli

    add_stripe_cli(sub)  # gateway stripe replay <event.json> [--direct] [--url]
    return parser


def _json_arg(text: str) -> Any:
    try:
        return json.loads(text, parse_float=Decimal)  # amounts never pass through a float
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from exc


def _settings(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--limits",
        type=_json_arg,
        help='JSON, e.g. \'{"budget": {"amount": "5.00", "period": "month"}, "rpm": 60}\'',
    )
    parser.add_argument("--models", help="comma-separated names or patterns, e.g. gpt-4o*")


def _op(parser: argparse.ArgumentParser, action: str) -> argparse.ArgumentParser:
    """Makes ``parser`` run the action ``action`` of gateway/actions.py: one positional
    argument per ``{name}`` of its path, then the flags every operator command shares."""
    path = tuple(re.findall(r"{(\w+)}", ACTIONS[action].path))
    for name in path:
        parser.add_argument(name)
    parser.epilog = (
        "Talks to a running gateway's admin API ($GATEWAY_URL, $GATEWAY_ADMIN_KEY) "
        "unless --direct, which opens $GATEWAY_DATABASE_URL itself. Both modes "
        "give the same answers."
    )
    parser.add_argument(
        "--direct",
        action="store_true",
        help="use the database ($GATEWAY_DATABASE_URL) instead of the admin API",
    )
    parser.add_argument(
        "--url",
        default=None,
        help="gateway base URL (default $GATEWAY_URL or http://127.0.0.1:8080)",
    )
    parser.add_argument("--json", action="store_true", help="print the raw JSON answer")
    parser.set_defaults(run=_perform, op_action=action, op_path=path)
    return parser


def _ranged(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--from", dest="from", help="first day (YYYY-MM-DD) or instant")
    parser.add_argument("--to", help="last day (included) or end instant (excluded)")
    parser.add_argument("--tz", help="IANA time zone for days, e.g. Europe/Paris (default UTC)")
    return parser


def _grouped(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument(
        "--group-by",
        dest="group_by",
        choices=["model", "key", "tag", "end_user", "session"],
        help="break the usage down by this attribute",
    )
    parser.add_argument("--limit", type=int, help="at most this many groups (default 100)")
    return parser


# Options that steer the CLI itself rather than name a parameter of the action.
_CLI_ONLY = {"command", "run", "op_action", "op_path", "direct", "url", "json", "file"}


REFERENCE_HELP = "your idempotency reference (8-100 of A-Za-z0-9_.:-): run twice, applies once"
BULK_REFERENCE_HELP = (
    "your idempotency reference (8-100 of A-Za-z0-9_.:-): run twice, credits each user once"
)


def params_of(args: argparse.Namespace) -> dict[str, Any]:
    """The action's parameters, as the API receives them: strings in a query for reads."""
    params = {
        k: v
        for k, v in vars(args).items()
        if k not in _CLI_ONLY
        and k not in args.op_path
        and not k.endswith("_command")
        and v is not None
    }
    if args.op_action == "bulk_credit":
        params["user_ids"] = [*args.user_ids, *_read_ids(args.file)]
    if ACTIONS[args.op_action].method == "GET":
        params = {k: str(v) for k, v in params.items()}
    return params


def _read_ids(path: Path | None) -> list[str]:
    if path is None:
        return []
    text = sys.stdin.read() if str(path) == "-" else path.read_text()
    return [s for s in (line.split("#", 1)[0].strip() for line in text.splitlines()) if s]


def _perform(args: argparse.Namespace, settings: Settings) -> None:
    from gateway.cli.tables import render
    from gateway.cli.transport import ApiTransport, CommandError, DirectTransport, Transport

    path = {name: getattr(args, name) for name in args.op_path}

    async def run() -> Any:
        if args.direct:
            unset = not os.environ.get("GATEWAY_DATABASE_URL")
            transport: Transport = DirectTransport(settings, default_database=unset)
        else:
            url = args.url or settings.gateway_url
            transport = ApiTransport(url, settings.admin_key)
        try:
            return await transport.call(args.op_action, path, params_of(args))
        finally:
            await transport.close()

    try:
        result = asyncio.run(run())
    except CommandError as exc:
        sys.exit(f"gateway: {exc}")
    except OSError as exc:
        sys.exit(f"gateway: {exc}")
    if args.json:
        sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(render(args.op_action, result))
    failed = partial_failure(result)
    if failed:
        sys.stdout.flush()
        sys.exit(f"gateway: {failed}")


def partial_failure(result: Any) -> str | None:
    """What failed in an answer that applied in part (``credits bulk``: ``failed`` rows), so
    the command exits non-zero and says which; None when everything applied."""
    if not isinstance(result, dict) or not result.get("failed"):
        return None
    rows = [r for r in result.get("data", ()) if r.get("status") == "failed"]
    which = ", ".join(f"{r['user_id']} ({(r.get('error') or {}).get('code')})" for r in rows)
    return f"{len(rows)} of {len(result.get('data', ()))} users failed: {which}"
