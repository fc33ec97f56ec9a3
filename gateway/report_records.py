"""The records of reports and the price book: periods and days, totals, cursors, price rows
and their changes. Plain frozen dataclasses, like ``gateway.records`` (the only module of the
package they import), so storage can build them without depending on the features above it.
Amounts are ``int`` nano-USD; prices nano-USD per 1M tokens; timestamps timezone-aware UTC.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from gateway.records import AuditEvent


@dataclass(frozen=True, slots=True)
class Period:
    start: datetime | None = None
    end: datetime | None = None


@dataclass(frozen=True, slots=True)
class UsageFilter:
    """Narrows a usage page or export: calls within ``period`` of ``model`` and ``key_id``
    (None: any)."""

    period: Period = Period()
    model: str | None = None
    key_id: str | None = None


@dataclass(frozen=True, slots=True)
class Totals:
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cost: int = 0


@dataclass(frozen=True, slots=True)
class ModelTotals:
    provider: str
    model: str
    totals: Totals


@dataclass(frozen=True, slots=True)
class UserTotals:
    user_id: str
    totals: Totals


@dataclass(frozen=True, slots=True)
class GroupTotals:
    """One group of a usage breakdown: its value (a key id, tag, end user or session; None
    for the calls without one) and its totals."""

    group: str | None
    totals: Totals


@dataclass(frozen=True, slots=True)
class Day:
    """One local calendar day as a UTC interval ``[start, end)``."""

    day: date
    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class DayTotals:
    day: Day
    totals: Totals


@dataclass(frozen=True, slots=True)
class Cursor:
    """The last row of a page: the next page starts strictly after it (newest first)."""

    created_at: datetime
    request_id: str


@dataclass(frozen=True, slots=True)
class PriceTier:
    """Long-context prices: those of a whole call whose prompt is above
    ``above_input_tokens``; nano-USD per 1M tokens, None where the class has no own price."""

    above_input_tokens: int
    input: int
    output: int
    cached_input: int | None = None
    cache_write: int | None = None
    cache_write_1h: int | None = None
    audio_input: int | None = None
    audio_output: int | None = None


@dataclass(frozen=True, slots=True)
class PriceRow:
    """One model of the price book; prices in nano-USD per 1M tokens."""

    model: str
    provider: str
    upstream_model: str
    kind: str
    max_output_tokens: int
    input: int
    cached_input: int | None
    output: int
    cache_write: int | None = None
    cache_write_1h: int | None = None
    audio_input: int | None = None
    audio_output: int | None = None
    tiers: tuple[PriceTier, ...] = ()
    # Nano-USD per 1,000 web search requests (migration 0012); None: not priced.
    web_search: int | None = None


@dataclass(frozen=True, slots=True)
class PriceChange:
    model: str
    old: PriceRow | None
    new: PriceRow | None
    events: list[AuditEvent] = field(default_factory=list)  # written with the change
