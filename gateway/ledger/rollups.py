"""Usage rollups: the sums the reports read instead of the usage rows.

``usage_rollups`` (migration 0016) holds, per bucket (a UTC hour or day) and dimension, the six
sums every report shows. The writers add a batch's deltas (``deltas``) in the transaction that
inserts its records, so a bucket always equals the sum of its rows.

A report over ``[start, end)`` reads each part of the period from the coarsest source that
covers it exactly (``split``): whole UTC days from the day buckets, whole hours around them
from the hour buckets, and the sub-hour edges from the rows themselves. Local days of a time
zone on a whole-hour offset are whole hours, so a report by local day reads no row at all;
revenue per day reads quarter-hour totals at the edges, so it reads no row in any zone (every
offset in use is a multiple of 15 minutes), where a breakdown of a half-hour zone's days
(Asia/Kolkata) reads the half hour at each end from the rows.

Dimensions (``dim``); a column a dimension does not use holds '':

``total``     one row per bucket (no user), also per quarter hour: revenue per day
``call``      per user, key ('' without one), provider and model: every call once
``end_user``, ``session``
              per user and value (``grp``), only the calls that have one
``tag``       per user and tag, once per tag of a call
``tagged``    per user, the calls with at least one tag, once

So a settlement writes two rows per call (its ``call`` hour and day) plus two per attribute
it has, and the shared totals once per batch. The calls without an attribute (a breakdown's
none group) are the ``call`` sums less the attribute's (less ``tagged`` for tags).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from gateway.ledger.sql import Params
from gateway.records import UsageRecord
from gateway.report_records import Period

GRAINS = ("hour", "day")
MEASURES = (
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "cost",
)
KEY = ("dim", "grain", "bucket_at", "user_id", "key_id", "provider", "model", "grp")
# An open side of a period: far enough to hold every record, aligned on a day.
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)

# What a batch's delta adds to an existing rollup row (both databases' upsert).
ADD_ON_CONFLICT = f"ON CONFLICT ({', '.join(KEY)}) DO UPDATE SET " + ", ".join(
    f"{m} = usage_rollups.{m} + excluded.{m}" for m in MEASURES
)

Key = tuple[str, str, datetime, str, str, str, str, str]
Delta = tuple[str, str, datetime, str, str, str, str, str, int, int, int, int, int, int]


def bucket(at: datetime, grain: str) -> datetime:
    """The start of the UTC quarter hour, hour or day holding ``at``."""
    at = at.astimezone(UTC).replace(second=0, microsecond=0)
    if grain == "quarter":
        return at.replace(minute=at.minute - at.minute % 15)
    at = at.replace(minute=0)
    return at.replace(hour=0) if grain == "day" else at


def _dims(r: UsageRecord) -> Iterable[tuple[str, str, str, str, str, str]]:
    """(dim, user_id, key_id, provider, model, grp) of every user row ``r`` adds to."""
    yield "call", r.user_id, r.key_id or "", r.provider, r.model, ""
    if r.end_user:
        yield "end_user", r.user_id, "", "", "", r.end_user
    if r.session_id:
        yield "session", r.user_id, "", "", "", r.session_id
    if r.tags:
        yield "tagged", r.user_id, "", "", "", ""
        for tag in r.tags:
            yield "tag", r.user_id, "", "", "", tag


def deltas(records: Iterable[UsageRecord]) -> list[Delta]:
    """What ``records`` (each inserted once) add to the rollups, one delta per rollup row, in
    key order: every writer locks the shared ``total`` rows in the same order."""
    # Records are summed per (quarter hour, user, key, provider, model) first, and per
    # attribute value: a batch holds few such groups, so the buckets are built per group,
    # not per record (this runs on the settlement path, holding the GIL in embedded mode).
    calls: dict[tuple[datetime, str, str, str, str], list[int]] = {}
    attributes: dict[tuple[datetime, str, str, str], list[int]] = {}
    for r in records:
        at = r.created_at if r.created_at.tzinfo is UTC else r.created_at.astimezone(UTC)
        quarter = at.replace(minute=at.minute - at.minute % 15, second=0, microsecond=0)
        measures = [
            1,
            r.prompt_tokens,
            r.completion_tokens,
            r.cached_tokens,
            r.reasoning_tokens,
            r.cost,
        ]
        _add(calls, (quarter, r.user_id, r.key_id or "", r.provider, r.model), measures)
        if r.end_user:
            _add(attributes, (quarter, "end_user", r.user_id, r.end_user), measures)
        if r.session_id:
            _add(attributes, (quarter, "session", r.user_id, r.session_id), measures)
        if r.tags:
            _add(attributes, (quarter, "tagged", r.user_id, ""), measures)
            for tag in r.tags:
                _add(attributes, (quarter, "tag", r.user_id, tag), measures)
    sums: dict[Key, list[int]] = {}
    buckets: dict[datetime, tuple[datetime, datetime]] = {}  # quarter -> (hour, day)
    for start in {c[0] for c in calls} | {a[0] for a in attributes}:
        hour = start.replace(minute=0)
        buckets[start] = hour, hour.replace(hour=0)
    for (quarter, user_id, key_id, provider, model), row in calls.items():
        hour, day = buckets[quarter]
        _add(sums, ("total", "quarter", quarter, *_NONE), row)
        _add(sums, ("total", "hour", hour, *_NONE), row)
        _add(sums, ("total", "day", day, *_NONE), row)
        _add(sums, ("call", "hour", hour, user_id, key_id, provider, model, ""), row)
        _add(sums, ("call", "day", day, user_id, key_id, provider, model, ""), row)
    for (quarter, dim, user_id, grp), row in attributes.items():
        hour, day = buckets[quarter]
        _add(sums, (dim, "hour", hour, user_id, "", "", "", grp), row)
        _add(sums, (dim, "day", day, user_id, "", "", "", grp), row)
    return sorted((*key, *row) for key, row in sums.items())  # type: ignore[misc]


def _add(sums: dict[Any, list[int]], key: Any, measures: list[int]) -> None:
    row = sums.get(key)
    if row is None:
        sums[key] = measures.copy()
        return
    row[0] += measures[0]
    row[1] += measures[1]
    row[2] += measures[2]
    row[3] += measures[3]
    row[4] += measures[4]
    row[5] += measures[5]


_NONE = ("", "", "", "", "")


# -- reading -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Part:
    """``[lo, hi)`` read from ``source``: ``day``, ``hour`` or ``quarter`` buckets, or ``rows``."""

    source: str
    lo: datetime
    hi: datetime


def split(period: Period, *, quarters: bool = False) -> list[Part]:
    """``period`` as disjoint parts that tile it, each read from the coarsest exact source;
    with ``quarters`` (the ``total`` dimension) whole quarter hours at the edges too."""
    parts = _split(period)
    if not quarters:
        return parts
    out = []
    for part in parts:
        q0, q1 = _ceil(part.lo, "quarter"), bucket(part.hi, "quarter")
        if part.source != "rows" or q0 >= q1:
            out.append(part)
            continue
        if part.lo < q0:
            out.append(Part("rows", part.lo, q0))
        out.append(Part("quarter", q0, q1))
        if q1 < part.hi:
            out.append(Part("rows", q1, part.hi))
    return out


def _split(period: Period) -> list[Part]:
    lo = period.start or EARLIEST
    hi = period.end or LATEST
    if lo >= hi:
        return []
    h0, h1 = _ceil(lo, "hour"), bucket(hi, "hour")
    if h0 >= h1:  # no whole hour inside
        return [Part("rows", lo, hi)]
    out = [Part("rows", lo, h0)] if lo < h0 else []
    d0, d1 = _ceil(h0, "day"), bucket(h1, "day")
    if d0 < d1:
        if h0 < d0:
            out.append(Part("hour", h0, d0))
        out.append(Part("day", d0, d1))
        if d1 < h1:
            out.append(Part("hour", d1, h1))
    else:
        out.append(Part("hour", h0, h1))
    if h1 < hi:
        out.append(Part("rows", h1, hi))
    return out


def _ceil(at: datetime, grain: str) -> datetime:
    start = bucket(at, grain)
    return start if start == at else start + _LENGTH[grain]


_LENGTH = {"day": DAY, "hour": HOUR, "quarter": timedelta(minutes=15)}


@dataclass(frozen=True, slots=True)
class Rolled:
    """Rollup rows of ``dim`` in a report: ``values`` for its columns, in order, read from
    the rollup row ``r``; ``negate``: subtracted (the none group of an attribute)."""

    dim: str
    values: tuple[str, ...] = ()
    negate: bool = False


def gathered(
    p: Params,
    periods: Sequence[Period],
    *,
    rolled: Sequence[Rolled],
    columns: Sequence[tuple[str, str]] = (),
    label: str | None = None,
    user_id: str | None = None,
    key_id: str | None = None,
    tags: bool = False,
) -> str | None:
    """A SELECT of ``columns`` and the six measures over ``periods``: per part of each period
    (``split``), the ``rolled`` rollup rows in its buckets, or the usage rows (aliased ``u``)
    in it, one per record (one per tag with ``tags``: ``t.key``). ``columns`` are (name, the
    value read from a row); ``label`` names a column holding the position of the period a row
    belongs to. ``user_id`` and ``key_id`` filter. None when every period is empty.

    One UNION ALL branch per part and source, each a range scan of its own: a join of the
    rollups with a table of parts would let PostgreSQL hash-join a whole dimension instead.
    """
    # Each value is a parameter once, named when a branch first uses it (PostgreSQL cannot
    # type a parameter no branch uses).
    named: dict[str, str] = {}

    def param(name: str, value: object) -> str:
        if name not in named:
            named[name] = p(value)
        return named[name]

    rows = "usage_records u LEFT JOIN json_each(u.tags) t ON true" if tags else "usage_records u"
    names = [name for name, _ in columns]
    quarters = all(r.dim == "total" for r in rolled)
    branches = []
    for i, period in enumerate(periods):
        at = [f"{p(i)}::int AS {label}"] if label else []
        for part in split(period, quarters=quarters):
            lo, hi = p(part.lo), p(part.hi)
            if part.source == "rows":
                select = at + [f"{value} AS {name}" for name, value in columns] + list(_COUNTED)
                where = f"u.created_at >= {lo} AND u.created_at < {hi}"
                if user_id is not None:
                    where += f" AND u.user_id = {param('user', user_id)}"
                if key_id is not None:
                    where += f" AND u.key_id = {param('key', key_id)}"
                branches.append(f"SELECT {', '.join(select)} FROM {rows} WHERE {where}")
                continue
            for source in rolled:
                measures = _NEGATED if source.negate else _ROLLED
                values = [f"{v} AS {n}" for n, v in zip(names, source.values, strict=True)]
                select = at + values + list(measures)
                where = f"r.dim = {param(source.dim, source.dim)}"
                where += f" AND r.grain = {param(part.source, part.source)}"
                where += f" AND r.bucket_at >= {lo} AND r.bucket_at < {hi}"
                if user_id is not None:
                    where += f" AND r.user_id = {param('user', user_id)}"
                if key_id is not None:
                    where += f" AND r.key_id = {param('key', key_id)}"
                branches.append(f"SELECT {', '.join(select)} FROM usage_rollups r WHERE {where}")
    return " UNION ALL ".join(branches) if branches else None


_ROLLED = tuple(f"r.{m} AS {m}" for m in MEASURES)
_NEGATED = tuple(f"-r.{m} AS {m}" for m in MEASURES)
# The first branch of a UNION names its columns, in both databases: every branch names them.
_COUNTED = ("1 AS requests", *(f"u.{m} AS {m}" for m in MEASURES[1:]))


SUMS = ", ".join(f"sum({m}) AS {m}" for m in MEASURES)
