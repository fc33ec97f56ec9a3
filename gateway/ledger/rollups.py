"""Usage rollups: the sums the reports read instead of the usage rows.

``usage_rollups`` (migration 0013) holds, per bucket (a UTC hour or day) and dimension, the six
sums every report shows. The writers add a batch's deltas (``deltas``) in the transaction that
inserts its records, so a bucket always equals the sum of its rows.

A report over ``[start, end)`` reads each part of the period from the coarsest source that
covers it exactly (``split``): whole UTC days from the day buckets, whole hours around them
from the hour buckets, and the sub-hour edges from the rows themselves. Local days of a time
zone on a whole-hour offset are whole hours, so a report by local day reads no row at all;
a half-hour zone (Asia/Kolkata) reads half an hour of rows at each end of each day.

Dimensions (``dim``) and the group value each keeps in ``grp`` ('' for "none"):
``total`` (no user, no group), ``model`` (with ``provider``), ``key``, ``end_user``,
``session``, ``tag`` (a call counts once in each of its tags, '' when it has none).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from gateway.ledger.sql import Params
from gateway.records import Period, UsageRecord

GRAINS = ("hour", "day")
MEASURES = (
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "cost",
)
KEY = ("dim", "grain", "bucket_at", "user_id", "grp", "provider")
# An open side of a period: far enough to hold every record, aligned on a day.
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)

_COLUMNS = ", ".join(KEY + MEASURES)
_ADD = ", ".join(f"{m} = usage_rollups.{m} + excluded.{m}" for m in MEASURES)
_ON_CONFLICT = f"ON CONFLICT ({', '.join(KEY)}) DO UPDATE SET {_ADD}"
# PostgreSQL: one statement for a whole batch of deltas, as column arrays.
UPSERT_UNNEST = (
    f"INSERT INTO usage_rollups ({_COLUMNS}) SELECT * FROM unnest("
    "$1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::text[], $6::text[], "
    "$7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[]"
    f") {_ON_CONFLICT}"
)
# SQLite: one row per execution (executemany).
UPSERT_ROW = (
    f"INSERT INTO usage_rollups ({_COLUMNS}) VALUES ({', '.join('?' * len(KEY + MEASURES))}) "
    f"{_ON_CONFLICT}"
)

Delta = tuple[str, str, datetime, str, str, str, int, int, int, int, int, int]


def bucket(at: datetime, grain: str) -> datetime:
    """The start of the UTC hour or day holding ``at``."""
    at = at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return at.replace(hour=0) if grain == "day" else at


def _dims(r: UsageRecord) -> Iterable[tuple[str, str, str, str]]:
    yield "total", "", "", ""
    yield "model", r.user_id, r.model, r.provider
    yield "key", r.user_id, r.key_id or "", ""
    yield "end_user", r.user_id, r.end_user or "", ""
    yield "session", r.user_id, r.session_id or "", ""
    for tag in r.tags or ("",):
        yield "tag", r.user_id, tag, ""


def deltas(records: Iterable[UsageRecord]) -> list[Delta]:
    """What ``records`` (each inserted once) add to the rollups, one delta per rollup row, in
    key order: every writer locks the shared ``total`` rows in the same order."""
    sums: dict[tuple[str, str, datetime, str, str, str], list[int]] = {}
    for r in records:
        measures = (
            1,
            r.prompt_tokens,
            r.completion_tokens,
            r.cached_tokens,
            r.reasoning_tokens,
            r.cost,
        )
        for grain in GRAINS:
            start = bucket(r.created_at, grain)
            for dim, user_id, grp, provider in _dims(r):
                row = sums.setdefault((dim, grain, start, user_id, grp, provider), [0] * 6)
                for i, value in enumerate(measures):
                    row[i] += value
    return sorted((*key, *row) for key, row in sums.items())  # type: ignore[misc]


# -- reading -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Part:
    """``[lo, hi)`` read from ``source``: ``day`` or ``hour`` buckets, or ``rows``."""

    source: str
    lo: datetime
    hi: datetime


def split(period: Period) -> list[Part]:
    """``period`` as disjoint parts that tile it, each read from the coarsest exact source."""
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
    return start if start == at else start + (DAY if grain == "day" else HOUR)


def parts_table(p: Params, periods: Sequence[Period]) -> str | None:
    """``parts(i, src, lo, hi)``: the parts of each period, ``i`` its position; None when
    every period is empty."""
    values = [
        f"({p(i)}::int, {p(part.source)}::text, {p(part.lo)}::timestamptz, "
        f"{p(part.hi)}::timestamptz)"
        for i, period in enumerate(periods)
        for part in split(period)
    ]
    return f"parts(i, src, lo, hi) AS (VALUES {', '.join(values)})" if values else None


@dataclass(frozen=True, slots=True)
class Column:
    """A group column of a report: its name, read from the rollups and from the rows."""

    name: str
    rolled: str
    counted: str


def gathered(
    p: Params,
    *,
    dim: str,
    columns: Sequence[Column],
    user_id: str | None = None,
    grp: str | None = None,
    tags: bool = False,
) -> str:
    """A SELECT of ``columns`` and the six measures over the table ``parts``: the rollup rows
    of ``dim`` in its bucket parts, and the usage rows (aliased ``u``) in its row parts, one
    per record (one per tag with ``tags``: ``t.key``). ``user_id`` and ``grp`` filter."""
    rolled_where = (
        f"r.dim = {p(dim)} AND r.grain = p.src AND r.bucket_at >= p.lo AND r.bucket_at < p.hi"
    )
    counted_where = "p.src = 'rows' AND u.created_at >= p.lo AND u.created_at < p.hi"
    if user_id is not None:
        who = p(user_id)
        rolled_where += f" AND r.user_id = {who}"
        counted_where += f" AND u.user_id = {who}"
    if grp is not None:
        # Only the key dimension is filtered by group: spend per key.
        value = p(grp)
        rolled_where += f" AND r.grp = {value}"
        counted_where += f" AND u.key_id = {value}"
    rolled = ", ".join([f"{c.rolled} AS {c.name}" for c in columns] + [f"r.{m}" for m in MEASURES])
    counted = ", ".join(
        [f"{c.counted} AS {c.name}" for c in columns]
        + ["1", "u.prompt_tokens", "u.completion_tokens", "u.cached_tokens"]
        + ["u.reasoning_tokens", "u.cost"]
    )
    rows = "usage_records u LEFT JOIN json_each(u.tags) t ON true" if tags else "usage_records u"
    # CROSS JOIN: SQLite then loops over the few parts and range-scans the index per part
    # (PostgreSQL plans it as the inner join it is).
    return (
        f"SELECT {rolled} FROM parts p CROSS JOIN usage_rollups r WHERE {rolled_where} "
        f"UNION ALL SELECT {counted} FROM parts p CROSS JOIN {rows} WHERE {counted_where}"
    )


SUMS = ", ".join(f"sum({m}) AS {m}" for m in MEASURES)
