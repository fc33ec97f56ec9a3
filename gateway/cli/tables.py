"""The CLI's readable output: action answers (JSON-ready dicts) as aligned text tables.

``COLUMNS`` gives, per action name of gateway/actions.py, the list to tabulate and its
columns (header, dotted path into a row); scalar fields print as ``key  value`` lines above
the table, a ``total`` object becomes the table's last row, and ``has_more`` a hint on how to
get the next page. Anything else prints as flattened ``key  value`` lines.
"""

from __future__ import annotations

import re
from typing import Any

Columns = list[tuple[str, str]]

_TOKENS: Columns = [
    ("requests", "requests"),
    ("prompt", "prompt_tokens"),
    ("cached", "cached_tokens"),
    ("completion", "completion_tokens"),
    ("reasoning", "reasoning_tokens"),
    ("tokens", "total_tokens"),
]

COLUMNS: dict[str, tuple[str, Columns]] = {
    "usage": (
        "data",
        [
            ("time", "created_at"),
            ("request", "request_id"),
            ("model", "model"),
            ("status", "status"),
            ("prompt", "prompt_tokens"),
            ("cached", "cached_tokens"),
            ("completion", "completion_tokens"),
            ("reasoning", "reasoning_tokens"),
            ("in/1M", "price_per_1m_tokens.input"),
            ("cached/1M", "price_per_1m_tokens.cached_input"),
            ("out/1M", "price_per_1m_tokens.output"),
            ("cost", "cost"),
        ],
    ),
    "stats": (
        "models",
        [
            ("provider", "provider"),
            ("model", "model"),
            *_TOKENS,
            ("cost", "cost"),
            ("avg cost", "average_cost"),
        ],
    ),
    "revenue": ("data", [("day", "day"), *_TOKENS, ("revenue", "revenue")]),
    "models_report": ("data", [("model", "id"), *_TOKENS, ("revenue", "revenue")]),
    "top_users": (
        "data",
        [("user", "user_id"), *_TOKENS, ("revenue", "revenue"), ("share %", "share")],
    ),
    "entries": (
        "data",
        [
            ("version", "version"),
            ("time", "created_at"),
            ("kind", "kind"),
            ("amount", "amount"),
            ("balance", "balance_after"),
            ("reference", "reference"),
            ("reason", "reason"),
        ],
    ),
    "audit": (
        "data",
        [
            ("time", "created_at"),
            ("actor", "actor"),
            ("action", "action"),
            ("target", "target"),
            ("amount", "amount"),
            ("reason", "reason"),
        ],
    ),
    "list_invites": (
        "data",
        [("id", "id"), ("email", "email"), ("expires", "expires_at"), ("used by", "used_by")],
    ),
    "webhook_deliveries": (
        "data",
        [
            ("id", "id"),
            ("time", "created_at"),
            ("type", "type"),
            ("event", "event_id"),
            ("endpoint", "endpoint"),
            ("status", "status"),
            ("attempts", "attempts"),
            ("last", "last_error"),
        ],
    ),
    "list_models": (
        "data",
        [
            ("model", "id"),
            ("provider", "provider"),
            ("kind", "kind"),
            ("input/1M", "price_per_1m_tokens.input"),
            ("cached/1M", "price_per_1m_tokens.cached_input"),
            ("output/1M", "price_per_1m_tokens.output"),
            ("max output", "max_output_tokens"),
        ],
    ),
    "reload_models": (
        "changes",
        [
            ("model", "model"),
            ("change", "action"),
            ("old input", "old.price_per_1m_tokens.input"),
            ("new input", "new.price_per_1m_tokens.input"),
            ("old output", "old.price_per_1m_tokens.output"),
            ("new output", "new.price_per_1m_tokens.output"),
        ],
    ),
    "bulk_credit": (
        "data",
        [
            ("user", "user_id"),
            ("status", "status"),
            ("duplicate", "duplicate"),
            ("balance", "balance"),
            ("reserved", "reserved"),
            ("error", "error.message"),
        ],
    ),
    "list_keys": (
        "data",
        [
            ("id", "id"),
            ("prefix", "prefix"),
            ("name", "name"),
            ("created", "created_at"),
            ("revoked", "revoked_at"),
        ],
    ),
    "usage_report": ("data", [("group", "group"), *_TOKENS, ("revenue", "revenue")]),
    "list_users": (
        "data",
        [
            ("id", "id"),
            ("email", "email"),
            ("balance", "balance"),
            ("reserved", "reserved"),
            ("created", "created_at"),
        ],
    ),
}
# A stats answer with group_by: its groups instead of its models.
_GROUPED_STATS = (
    "groups",
    [("group", "group"), *_TOKENS, ("cost", "cost"), ("avg cost", "average_cost")],
)
# Where a breakdown row (gateway.reports.breakdown) keeps its group's value.
_GROUP_VALUE = {"key": "key_id", "tag": "tag", "end_user": "end_user", "session": "session_id"}
_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")
_ISO_TIME = re.compile(r"^(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)(\.\d+)?(\+00:00|Z)$")
_PAGING = {"has_more", "next_cursor"}


def _labelled(data: dict[str, Any]) -> dict[str, Any]:
    """A breakdown whose rows carry their group's value as ``group`` (provider:model for the
    model breakdown; ``-`` for the calls without the attribute)."""
    name = _GROUP_VALUE.get(data["group_by"])
    out = dict(data)
    for key in ("data", "groups"):
        rows = data.get(key)
        if isinstance(rows, list):
            out[key] = [
                {
                    **r,
                    "group": (
                        f"{r.get('provider')}:{r.get('model')}"
                        if name is None
                        else r.get(name)
                        if r.get(name) is not None
                        else "-"
                    ),
                }
                for r in rows
            ]
    return out


def render(action: str, data: Any) -> str:
    """The answer ``data`` of the action ``action`` as text for a terminal."""
    table = COLUMNS.get(action)
    if not isinstance(data, dict):
        return str(data)
    if "group_by" in data:
        data = _labelled(data)
        if action == "stats":
            table = _GROUPED_STATS
    if table is None or not isinstance(data.get(table[0]), list):
        return _pairs(_flat(data))
    key, columns = table
    head = {
        k: v
        for k, v in data.items()
        if k not in {key, "total", "data", *_PAGING} and v is not None and not isinstance(v, list)
    }
    rows = [[_cell(_get(r, path)) for _, path in columns] for r in data[key]]
    if isinstance(data.get("total"), dict):
        rows.append(["total", *(_cell(_get(data["total"], p)) for _, p in columns[1:])])
    lines = [_pairs(_flat(head))] if head else []
    lines.append(_table([h for h, _ in columns], rows) if rows else "(none)")
    if data.get("has_more"):
        lines.append(
            f"(more: --cursor {data['next_cursor']})"
            if data.get("next_cursor")
            else "(more: raise --limit or use --offset)"
        )
    return "\n".join(lines)


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    numeric = [
        all(_NUMBER.match(r[i]) or r[i] in ("", "total") for r in rows) for i in range(len(headers))
    ]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if n else c.ljust(w) for c, w, n in zip(cells, widths, numeric, strict=True)
        ).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


def _get(row: dict[str, Any], path: str) -> Any:
    value: Any = row
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        match = _ISO_TIME.match(value)
        if match:  # UTC timestamps to the second: the table is for reading
            return f"{match.group(1)} {match.group(2)}"
    if isinstance(value, list):  # e.g. a prune's months: 2026-06, 2026-07
        return ", ".join(_cell(v) for v in value) or "(none)"
    return str(value)


def _pairs(flat: dict[str, Any]) -> str:
    width = max((len(k) for k in flat), default=0)
    return "\n".join(f"{k.ljust(width)}  {_cell(v)}" for k, v in flat.items())


def _flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in data.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = "" if v is None else v
    return out
