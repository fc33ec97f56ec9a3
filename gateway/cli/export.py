"""``gateway usage export``: the usage records of a range as CSV or JSON lines, written as
they stream in (from the admin API's ``GET /admin/usage/export``, or with ``--direct`` from
the database through the same gateway/exports.py), never held whole in memory."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator
from typing import IO, Any

import httpx

from gateway.settings import Settings

# `gateway usage export ...` is parsed as this command: `usage` itself takes a user id.
COMMAND = "usage-export"


def add_cli(sub: Any) -> None:
    p = sub.add_parser(
        COMMAND,
        prog="gateway usage export",
        help="(gateway usage export) usage records of a range as CSV or JSON lines",
    )
    p.add_argument("--user", help="only this user's records (default: every user)")
    p.add_argument("--format", choices=["csv", "jsonl"], default="csv")
    p.add_argument("--from", dest="from", help="first day (YYYY-MM-DD) or instant")
    p.add_argument("--to", help="last day (included) or end instant (excluded)")
    p.add_argument("--tz", help="IANA time zone for days, e.g. Europe/Paris (default UTC)")
    p.add_argument("--output", "-o", help="write to this file (default: standard output)")
    p.add_argument("--direct", action="store_true", help="read the database itself")
    p.add_argument("--url", help="gateway base URL (default $GATEWAY_URL)")
    p.set_defaults(run=run)


def rewrite(argv: list[str]) -> list[str]:
    """``usage export ARGS`` -> ``usage-export ARGS`` (other argument lists unchanged)."""
    return [COMMAND, *argv[2:]] if argv[:2] == ["usage", "export"] else argv


def run(args: argparse.Namespace, settings: Settings) -> None:
    params = {
        k: v
        for k, v in (
            ("user", args.user),
            ("format", args.format),
            ("from", getattr(args, "from")),
            ("to", args.to),
            ("tz", args.tz),
        )
        if v is not None
    }
    out: IO[bytes] = open(args.output, "wb") if args.output else sys.stdout.buffer
    try:
        asyncio.run(
            _copy(_direct(settings, params) if args.direct else _api(args, settings, params), out)
        )
    except _Refused as exc:
        sys.exit(f"gateway: {exc}")
    finally:
        if args.output:
            out.close()


class _Refused(Exception):
    pass


async def _copy(chunks: AsyncIterator[bytes], out: IO[bytes]) -> None:
    async for chunk in chunks:
        out.write(chunk)
    out.flush()


async def _api(
    args: argparse.Namespace, settings: Settings, params: dict[str, str]
) -> AsyncIterator[bytes]:
    if not settings.admin_key:
        raise _Refused("GATEWAY_ADMIN_KEY is needed to use the admin API (or --direct)")
    url = (args.url or settings.gateway_url).rstrip("/")
    headers = {"Authorization": f"Bearer {settings.admin_key}"}
    try:
        async with (
            httpx.AsyncClient(base_url=url, headers=headers, timeout=None) as client,
            client.stream("GET", "/admin/usage/export", params=params) as response,
        ):
            if response.status_code >= 400:
                body = await response.aread()
                raise _Refused(_message(body, response.status_code))
            async for chunk in response.aiter_bytes():
                yield chunk
    except httpx.HTTPError as exc:
        raise _Refused(f"cannot reach the gateway at {url}: {exc}") from exc


def _message(body: bytes, status: int) -> str:
    try:
        return str(httpx.Response(status, content=body).json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return f"{status} from the gateway: {body[:200]!r}"


async def _direct(settings: Settings, params: dict[str, str]) -> AsyncIterator[bytes]:
    from gateway.errors import GatewayError
    from gateway.exports import export_lines, export_query
    from gateway.ledger import open_ledger

    try:
        query = export_query(params, user_id=params.get("user"))
    except GatewayError as exc:
        raise _Refused(exc.message) from exc
    ledger = await open_ledger(settings.database_url)
    try:
        async for chunk in export_lines(ledger, query):
            yield chunk
    finally:
        await ledger.close()
