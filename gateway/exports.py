"""Usage exports: every usage record of a range as CSV or JSON lines, streamed.

``export_query`` checks the parameters first (so a bad one is a 400 before any byte is sent):
``format`` csv (default) or jsonl; ``from``/``to`` as in the reports (``gateway.reports``:
dates are whole local days of ``tz``, ``to`` included); ``model`` and ``key`` keep only those
calls; ``user`` on the admin export.
``export_lines`` then reads the records oldest first in pages of ``PAGE`` rows, each page one
keyset range scan that starts after the last row sent, and yields each page encoded: memory
stays one page whatever the range. A record inserted while the export runs is never repeated
and never displaces another; one landing inside the range after its page was read appears only
if it sorts after the rows already sent.

A JSON line is the record as ``GET .../usage`` shows it (``gateway.views.usage_view``) with
its ``user_id``. A CSV row has the columns of ``CSV_COLUMNS``: unit prices as USD per 1M
tokens under ``price_<class>`` (``price_web_search``: USD per 1,000 requests), tags joined
by commas (a tag never holds one). ``end_user``, ``session_id`` and ``tags`` come from
callers: in CSV one starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a
leading ``'`` so a spreadsheet shows it as text instead of running it as a formula (OWASP,
"CSV Injection"); JSON lines carry every value as recorded.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Final

import orjson

from gateway.errors import BadRequest
from gateway.ledger.base import Ledger
from gateway.report_records import Cursor, Period, UsageFilter
from gateway.reports import Params, period, usage_filter, zone
from gateway.views import usage_view

PAGE: Final = 1000
FORMATS: Final = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}
CSV_COLUMNS: Final = (
    "created_at",
    "request_id",
    "user_id",
    "key_id",
    "model",
    "provider",
    "deployment",
    "endpoint",
    "status",
    "usage_source",
    "prompt_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "prompt_audio_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "output_audio_tokens",
    "total_tokens",
    "price_input",
    "price_cached_input",
    "price_cache_write",
    "price_cache_write_1h",
    "price_audio_input",
    "price_output",
    "price_audio_output",
    "web_search_requests",
    "price_web_search",
    "cost",
    "overdraft",
    "latency_ms",
    "end_user",
    "tags",
    "session_id",
)


@dataclass(frozen=True, slots=True)
class ExportQuery:
    format: str
    period: Period
    user_id: str | None = None
    only: UsageFilter | None = None  # its model and key narrow the rows

    @property
    def media_type(self) -> str:
        return FORMATS[self.format]

    @property
    def filename(self) -> str:
        return f"usage.{self.format}"


def export_query(params: Params, *, user_id: str | None) -> ExportQuery:
    """The export asked for (``user_id``: the only user whose records it covers, None for
    all). Raises ``BadRequest`` naming the parameter."""
    fmt = params.get("format") or "csv"
    if fmt not in FORMATS:
        raise BadRequest(
            f"format must be one of {', '.join(FORMATS)}", param="format", code="invalid_parameter"
        )
    only = usage_filter(params)
    return ExportQuery(format=fmt, period=period(params, zone(params)), user_id=user_id, only=only)


async def export_lines(
    ledger: Ledger, query: ExportQuery, *, page: int = PAGE
) -> AsyncIterator[bytes]:
    """The export's bytes, one chunk per page of records (CSV: the header first)."""
    if query.format == "csv":
        yield _csv_rows([CSV_COLUMNS])
    after: Cursor | None = None
    while True:
        records = await ledger.reports.usage_since(
            user_id=query.user_id, period=query.period, after=after, limit=page, only=query.only
        )
        if not records:
            return
        views = [{"user_id": r.user_id, **usage_view(r)} for r in records]
        if query.format == "csv":
            yield _csv_rows([_csv_row(v) for v in views])
        else:
            yield b"".join(orjson.dumps(v) + b"\n" for v in views)
        if len(records) < page:
            return
        last = records[-1]
        after = Cursor(created_at=last.created_at, request_id=last.request_id)


def _csv_row(view: dict[str, Any]) -> list[Any]:
    flat = dict(view)
    for name, price in view["price_per_1m_tokens"].items():
        flat[f"price_{name}"] = price
    flat["price_web_search"] = view["price_per_1k_requests"]["web_search"]
    flat["tags"] = ",".join(view["tags"])
    for name in _CALLERS_TEXT:
        flat[name] = _as_text(flat[name])
    return ["" if flat[c] is None else flat[c] for c in CSV_COLUMNS]


_CALLERS_TEXT: Final = ("end_user", "session_id", "tags")
_FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r")


def _as_text(value: str | None) -> str | None:
    # A spreadsheet runs a cell starting so as a formula; the quote makes it text.
    return "'" + value if value and value.startswith(_FORMULA_STARTS) else value


def _csv_rows(rows: list[Any]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(rows)  # RFC 4180 line ends
    return out.getvalue().encode()
