"""Per-key and per-user limits as the balance store enforces them, inside its atomic admission.

A ``Quota`` is one scope's limits at one admission: the scope is ``k:<key id>`` or
``u:<user id>`` (a user's limits count over all their keys; both apply, so the stricter wins).

- budget: nano-USD per period. A call's reservation counts against it like against the
  balance (``spent + reserved + amount <= budget``); settlement moves the reserved amount to
  spent, as its real cost. Periods are calendar days, ISO weeks (from Monday) or months in the
  limit's time zone, or ``total`` (never resets); ``period_start`` names the period in epoch
  seconds. A call counts in the period in force when it settles. When the store has no counter
  for a budgeted scope (first use, a restart of the embedded store, a Redis loss) the period's
  spend is read once from the ledger's usage records.
- rpm / tpm: a sliding log over the last 60 s (WINDOW_MS), exact: each admitted call is one
  entry with its tokens, so no 60 s span ever holds more than the limit, whichever process
  admitted them. A fixed window would let twice the limit through around each boundary; a
  sliding log costs memory per call in the window, which rpm bounds. tpm counts the tokens a
  call reserved (prompt + output cap), corrected at settlement to what it used.
- max_concurrent: calls holding a reservation (admission to settlement; a crashed process's
  holds expire with their reservation ttl).

A stream growing its hold re-admits its request id: that replaces its hold and its tokens and
is never counted as another request.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from gateway.records import Limits

WINDOW_MS = 60_000
LIMIT_NAMES = ("budget", "rpm", "tpm", "max_concurrent")


@dataclass(frozen=True, slots=True)
class Quota:
    scope: str  # k:<key id> | u:<user id>
    budget: int | None = None  # nano-USD in the period
    period_start: int = 0  # epoch seconds; 0 for total
    period: str = "total"  # day | week | month | total (records.Limits)
    rpm: int | None = None
    tpm: int | None = None
    max_concurrent: int | None = None


@dataclass(frozen=True, slots=True)
class QuotaUsage:
    """A scope's counters after an admission (or at a look): nano-USD spent in the period and
    reserved now, requests and tokens in the last 60 s, calls in flight, and ms until the
    oldest request in the window leaves it (0: the window is empty)."""

    scope: str
    spent: int = 0
    reserved: int = 0
    requests: int = 0
    tokens: int = 0
    in_flight: int = 0
    reset_ms: int = 0


@dataclass(frozen=True, slots=True)
class LimitRefusal:
    """Which limit of which scope refused; ``retry_ms``: when it may fit again (None: it
    cannot, e.g. more tokens than the tpm itself, or a budget spent)."""

    scope: str
    limit: str  # one of LIMIT_NAMES
    retry_ms: int | None = None


def period_bounds(period: str, tz: str, now: float | None = None) -> tuple[int, int | None]:
    """(start, end) of the period holding ``now``, epoch seconds; end None for total."""
    if period == "total":
        return 0, None
    key = (period, tz)
    cached = _BOUNDS.get(key)
    at = time.time() if now is None else now
    if cached is not None and cached[0] <= at < cached[1] and now is None:
        return cached
    local = datetime.fromtimestamp(at, ZoneInfo(tz))
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        start, end = day, day + timedelta(days=1)
    elif period == "week":
        start = day - timedelta(days=day.weekday())
        end = start + timedelta(days=7)
    else:
        start = day.replace(day=1)
        end = (start + timedelta(days=32)).replace(day=1)
    # Re-localize: across a DST change the wall-clock midnight has its own offset.
    zone = ZoneInfo(tz)
    bounds = (
        int(start.replace(tzinfo=None).replace(tzinfo=zone).timestamp()),
        int(end.replace(tzinfo=None).replace(tzinfo=zone).timestamp()),
    )
    if now is None:
        _BOUNDS[key] = bounds
    return bounds


# The period in force per (period, tz): computed once per period, not per call.
_BOUNDS: dict[tuple[str, str], tuple[int, int]] = {}


def quota(scope: str, limits: Limits) -> Quota:
    return Quota(
        scope=scope,
        budget=limits.budget,
        period_start=period_bounds(limits.period, limits.tz)[0] if limits.budget else 0,
        period=limits.period,
        rpm=limits.rpm,
        tpm=limits.tpm,
        max_concurrent=limits.max_concurrent,
    )


def since(q: Quota) -> datetime:
    """The start of the quota's period as a UTC datetime (for the ledger's spend query)."""
    return datetime.fromtimestamp(q.period_start, UTC)
