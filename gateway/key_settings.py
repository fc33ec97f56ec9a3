"""Parsing the settings of keys and users from API bodies and CLI flags (README "Keys and
limits"): ``limits``, ``models``, ``expires_at``, ``metadata``, ``disabled``. Each parser
raises a 422 naming the field at fault; a body that fails changes nothing.

``limits`` = ``{budget: {amount, period, tz}, rpm, tpm, max_concurrent}``: ``amount`` a USD
string (stored nano-USD), ``period`` day | week | month (calendar, in ``tz``, default UTC) or
total; the counts positive integers. ``models`` a list of model names or fnmatch globs
(``gpt-4o*``). JSON ``null`` clears a setting.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson

from gateway.errors import Unprocessable
from gateway.money import format_usd, parse_amount
from gateway.records import PERIODS, Limits

MAX_MODELS = 256
MAX_METADATA = 16_384  # bytes of JSON
COUNTS = ("rpm", "tpm", "max_concurrent")


def parse_limits(value: object, *, param: str = "limits") -> Limits | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise Unprocessable(f"{param} must be an object", param=param)
    unknown = set(value) - {"budget", *COUNTS}
    if unknown:
        raise Unprocessable(f"{param}: unknown field {sorted(unknown)[0]!r}", param=param)
    counts: dict[str, int | None] = {}
    for name in COUNTS:
        n = value.get(name)
        if n is not None and (isinstance(n, bool) or not _whole(n) or int(n) < 1):
            raise Unprocessable(f"{param}.{name} must be a positive integer", param=param)
        counts[name] = int(n) if n is not None else None
    budget, period, tz = None, "total", "UTC"
    raw = value.get("budget")
    if raw is not None:
        if not isinstance(raw, Mapping):
            raise Unprocessable(f"{param}.budget must be {{amount, period}}", param=param)
        budget = parse_amount(raw.get("amount"), param=f"{param}.budget.amount", allow_zero=True)
        period = raw.get("period", "total")
        if period not in PERIODS:
            raise Unprocessable(
                f"{param}.budget.period must be one of {', '.join(PERIODS)}", param=param
            )
        tz = raw.get("tz", "UTC")
        try:
            ZoneInfo(str(tz))
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise Unprocessable(f"{param}.budget.tz: unknown time zone {tz!r}") from exc
    return Limits(
        budget=budget,
        period=period,
        tz=str(tz),
        rpm=counts["rpm"],
        tpm=counts["tpm"],
        max_concurrent=counts["max_concurrent"],
    )


def merged_limits(current: Limits | None, patch: object) -> Limits | None:
    """``current`` with the fields ``patch`` names changed (a PATCH: an absent field keeps its
    value, ``null`` clears it; ``budget`` merges the same way field by field). A ``patch``
    that is not an object (``null`` clears every limit) is parsed on its own."""
    if current is None or not isinstance(patch, Mapping):
        return parse_limits(patch)
    fields: dict[str, Any] = {name: getattr(current, name) for name in COUNTS}
    if current.budget is not None:
        fields["budget"] = {
            "amount": format_usd(current.budget),
            "period": current.period,
            "tz": current.tz,
        }
    for name, value in patch.items():
        budget = fields.get("budget")
        if name == "budget" and isinstance(value, Mapping) and isinstance(budget, dict):
            fields["budget"] = {**budget, **value}
        else:
            fields[name] = value
    return parse_limits(fields)


def _whole(n: object) -> bool:
    try:
        return int(n) == n  # type: ignore[call-overload, no-any-return]
    except (TypeError, ValueError):
        return False


def parse_models(value: object) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):  # the CLI and query strings: comma-separated
        value = [v.strip() for v in value.split(",") if v.strip()]
    if (
        not isinstance(value, list)
        or len(value) > MAX_MODELS
        or not all(isinstance(v, str) and 0 < len(v) <= 200 for v in value)
    ):
        raise Unprocessable(
            "models must be a list of model names or patterns (gpt-4o*)", param="models"
        )
    return tuple(value)


def parse_time(value: object, *, param: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise Unprocessable(f"{param} must be an ISO 8601 timestamp", param=param)
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise Unprocessable(f"{param} must be an ISO 8601 timestamp", param=param) from exc
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC)


def parse_metadata(value: object) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or len(orjson.dumps(dict(value), default=str)) > MAX_METADATA:
        raise Unprocessable("metadata must be a JSON object of at most 16 KiB", param="metadata")
    return {str(k): _plain(v) for k, v in value.items()}


def _plain(v: Any) -> Any:
    # Request bodies carry numbers as Decimal (never float); keep them JSON-encodable.
    if isinstance(v, Decimal):
        return int(v) if v == v.to_integral_value() else str(v)
    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


def key_changes(params: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a key body that are present, parsed (absent ones are left alone)."""
    parsers: dict[str, Callable[[Any], Any]] = {
        "name": lambda v: _str(v, "name"),
        "expires_at": lambda v: parse_time(v, param="expires_at"),
        "limits": parse_limits,
        "models": parse_models,
        "metadata": parse_metadata,
    }
    return {name: parse(params[name]) for name, parse in parsers.items() if name in params}


def user_changes(params: Mapping[str, Any]) -> dict[str, Any]:
    def disabled(v: object) -> bool:
        if isinstance(v, str) and v.lower() in ("true", "false"):
            return v.lower() == "true"
        if not isinstance(v, bool):
            raise Unprocessable("disabled must be true or false", param="disabled")
        return v

    parsers: dict[str, Callable[[Any], Any]] = {
        "email": lambda v: _str(v, "email"),
        "disabled": disabled,
        "limits": parse_limits,
        "models": parse_models,
    }
    return {name: parse(params[name]) for name, parse in parsers.items() if name in params}


def _str(value: object, name: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise Unprocessable(f"{name} must be a string", param=name)
    return value
