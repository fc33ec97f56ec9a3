"""Budget periods as the calendar runs in a time zone, and OpenAI's reset duration format."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from gateway.metering.quota import period_bounds
from gateway.proxy.governance import duration


def at(text: str, tz: str = "UTC") -> float:
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz)).timestamp()


def test_day_week_month_and_total_in_a_time_zone() -> None:
    now = at("2024-03-31T12:00:00", "Europe/Paris")  # a Sunday, the day DST starts
    start, end = period_bounds("day", "Europe/Paris", now)
    assert (start, end) == (
        at("2024-03-31T00:00:00", "Europe/Paris"),
        at("2024-04-01T00:00:00", "Europe/Paris"),
    )
    assert end - start == 23 * 3600  # the short day
    week = period_bounds("week", "Europe/Paris", now)
    assert week[0] == at("2024-03-25T00:00:00", "Europe/Paris")
    month = period_bounds("month", "UTC", at("2024-12-31T23:59:59"))
    assert month == (at("2024-12-01T00:00:00"), at("2025-01-01T00:00:00"))
    assert period_bounds("total", "UTC", now) == (0, None)
    assert datetime.fromtimestamp(month[1], UTC).day == 1


def test_reset_durations_read_like_openais() -> None:
    assert [duration(ms) for ms in (20, 1000, 1001, 59_000, 360_000, 3_723_000)] == [
        "20ms",
        "1s",
        "2s",
        "59s",
        "6m0s",
        "1h2m3s",
    ]
