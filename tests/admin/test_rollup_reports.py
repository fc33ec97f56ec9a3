"""Reports read from the rollups equal sums over the usage rows, exactly, on random data and
random periods (instants anywhere in an hour, local days of zones on whole-, half- and
quarter-hour offsets, open ends), on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
import random
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from gateway.ledger.base import Ledger
from gateway.ledger.reports import days_between
from gateway.ledger.rollups import Part, split
from gateway.records import UsageRecord
from gateway.report_records import Period, Totals
from tests.admin.test_reports_contract import MakeLedger, run
from tests.ledger.books import usage

START = datetime(2025, 3, 28, tzinfo=UTC)  # spans Europe's spring DST change (03-30)
DAYS = 6
USERS = ("alice", "bob", "carol")
ZONES = ("UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata", "Asia/Kathmandu")


def random_records(rng: random.Random, count: int) -> list[UsageRecord]:
    out = []
    for n in range(count):
        at = START + timedelta(seconds=rng.random() * DAYS * 86400)
        if n % 7 == 0:  # right at, or just around, an hour's start
            at = at.replace(minute=0, second=0, microsecond=0) + timedelta(
                microseconds=rng.choice([-1, 0, 1])
            )
        record = usage(f"req_{n:05d}", rng.choice(USERS), rng.randint(0, 5000), at)
        out.append(
            replace(
                record,
                key_id=rng.choice(["k1", "k2", "k3", None]),
                model=rng.choice(["m1", "m2", "m3"]),
                provider=rng.choice(["openai", "local"]),
                prompt_tokens=rng.randint(0, 4000),
                completion_tokens=rng.randint(0, 900),
                cached_tokens=rng.randint(0, 300),
                reasoning_tokens=rng.randint(0, 100),
                end_user=rng.choice(["e1", "e2", None]),
                session_id=rng.choice(["s1", "s2", None]),
                tags=tuple(rng.sample(["a", "b", "c"], rng.randint(0, 3))),
            )
        )
    return out


def random_periods(rng: random.Random) -> list[Period]:
    periods = [Period(), Period(start=START + timedelta(hours=30)), Period(end=START)]
    for _ in range(12):
        a = START + timedelta(seconds=rng.uniform(-3600, (DAYS + 1) * 86400))
        b = a + timedelta(seconds=rng.uniform(1, 3 * 86400))
        periods.append(Period(start=a, end=b))
    for zone in ZONES:  # whole local days, as reports.period reads ?from=&to= dates
        tz = ZoneInfo(zone)
        first = START.date() + timedelta(days=rng.randint(0, 2))
        last = first + timedelta(days=rng.randint(0, 3))
        periods.append(Period(start=_midnight(first, tz), end=_midnight(last + timedelta(1), tz)))
    return periods


def _midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, datetime.min.time(), tzinfo=tz).astimezone(UTC)


def totals(records: Iterable[UsageRecord]) -> Totals:
    rows = list(records)
    return Totals(
        requests=len(rows),
        prompt_tokens=sum(r.prompt_tokens for r in rows),
        completion_tokens=sum(r.completion_tokens for r in rows),
        cached_tokens=sum(r.cached_tokens for r in rows),
        reasoning_tokens=sum(r.reasoning_tokens for r in rows),
        cost=sum(r.cost for r in rows),
    )


def grouped(
    records: Iterable[UsageRecord], keys: Callable[[UsageRecord], Iterable[object]]
) -> dict[object, Totals]:
    groups: dict[object, list[UsageRecord]] = defaultdict(list)
    for r in records:
        for key in keys(r):
            groups[key].append(r)
    return {k: totals(v) for k, v in groups.items()}


def inside(records: list[UsageRecord], period: Period, user: str | None) -> list[UsageRecord]:
    return [
        r
        for r in records
        if (period.start is None or r.created_at >= period.start)
        and (period.end is None or r.created_at < period.end)
        and (user is None or r.user_id == user)
    ]


GROUP_KEYS: dict[str, Callable[[UsageRecord], Iterable[object]]] = {
    "key": lambda r: [r.key_id],
    "end_user": lambda r: [r.end_user],
    "session": lambda r: [r.session_id],
    "tag": lambda r: list(r.tags) or [None],
}


async def check_period(
    ledger: Ledger, records: list[UsageRecord], period: Period, user: str | None
) -> None:
    rows = inside(records, period, user)
    total, models = await ledger.reports.usage_totals(user_id=user, period=period)
    assert total == totals(rows), period
    assert {(m.provider, m.model): m.totals for m in models} == grouped(
        rows, lambda r: [(r.provider, r.model)]
    )
    for group_by, keys in GROUP_KEYS.items():
        total, groups, more = await ledger.reports.usage_groups(
            user_id=user, period=period, group_by=group_by, limit=100
        )
        assert total == totals(rows), (group_by, period)
        assert {g.group: g.totals for g in groups} == grouped(rows, keys), (group_by, period)
        assert not more
    if user is None:
        total, users, _ = await ledger.reports.top_users(period=period, limit=10)
        assert total == totals(rows)
        assert {u.user_id: u.totals for u in users} == grouped(rows, lambda r: [r.user_id])


@pytest.mark.parametrize("seed", [1, 2])
def test_reports_equal_sums_of_the_rows_on_random_periods(
    make_ledger: MakeLedger, seed: int
) -> None:
    rng = random.Random(seed)
    records = random_records(rng, 600)

    async def scenario(ledger: Ledger) -> None:
        for user in USERS:
            await ledger.directory.create_user(user_id=user, email=None)
        shuffled = rng.sample(records, len(records))  # out of time order, in uneven batches
        i = 0
        while i < len(shuffled):
            n = rng.randint(1, 90)
            await ledger.journal.write_usage(shuffled[i : i + n])
            i += n
        for period in random_periods(rng):
            await check_period(ledger, records, period, None)
            await check_period(ledger, records, period, rng.choice(USERS))

    run(make_ledger, scenario)


@pytest.mark.parametrize("zone", ZONES)
def test_revenue_per_local_day_equals_sums_of_the_rows(make_ledger: MakeLedger, zone: str) -> None:
    rng = random.Random(zone)
    records = random_records(rng, 500)
    tz = ZoneInfo(zone)

    async def scenario(ledger: Ledger) -> None:
        for user in USERS:
            await ledger.directory.create_user(user_id=user, email=None)
        await ledger.journal.write_usage(records)
        clip = Period(start=START + timedelta(minutes=17), end=START + timedelta(days=5, hours=3))
        days = days_between(START.date() - timedelta(1), START.date() + timedelta(DAYS), tz)
        for chosen in (days, days_between(days[0].day, days[-1].day, tz, clip=clip)):
            total, per_day = await ledger.reports.revenue_by_day(chosen)
            assert [d.day for d in per_day] == chosen
            for d in per_day:
                assert d.totals == totals(inside(records, Period(d.day.start, d.day.end), None))
            assert total == totals(
                r for d in chosen for r in inside(records, Period(d.start, d.end), None)
            )

    run(make_ledger, scenario)


def test_spend_since_any_instant_equals_sums_of_the_rows(make_ledger: MakeLedger) -> None:
    rng = random.Random(9)
    records = random_records(rng, 400)

    async def scenario(ledger: Ledger) -> None:
        for user in USERS:
            await ledger.directory.create_user(user_id=user, email=None)
        await ledger.journal.write_usage(records)
        for _ in range(15):
            since = START + timedelta(seconds=rng.uniform(-600, DAYS * 86400))
            later = [r for r in records if r.created_at >= since]
            for key in ("k1", "k2"):
                spent = await ledger.reports.spend_since(scope=f"k:{key}", since=since)
                assert spent == sum(r.cost for r in later if r.key_id == key)
            for user in USERS:
                spent = await ledger.reports.spend_since(scope=f"u:{user}", since=since)
                assert spent == sum(r.cost for r in later if r.user_id == user)

    run(make_ledger, scenario)


def test_a_period_is_tiled_by_its_parts_from_the_coarsest_source() -> None:
    h = timedelta(hours=1)
    day = datetime(2025, 1, 2, tzinfo=UTC)
    lo, hi = day - 2 * h - timedelta(minutes=30), day + 26 * h + timedelta(seconds=1)
    assert split(Period(lo, hi)) == [
        Part("rows", lo, day - 2 * h),
        Part("hour", day - 2 * h, day),
        Part("day", day, day + 24 * h),
        Part("hour", day + 24 * h, day + 26 * h),
        Part("rows", day + 26 * h, hi),
    ]
    assert split(Period(day, day + 30 * timedelta(minutes=1))) == [
        Part("rows", day, day + timedelta(minutes=30))
    ]
    assert split(Period(day + timedelta(minutes=5), day + 3 * h)) == [
        Part("rows", day + timedelta(minutes=5), day + h),
        Part("hour", day + h, day + 3 * h),
    ]
    assert split(Period(day, day)) == []
    rng = random.Random(4)
    for _ in range(500):
        a = day + timedelta(seconds=rng.uniform(0, 5 * 86400))
        b = a + timedelta(seconds=rng.uniform(0, 3 * 86400))
        parts = split(Period(a, b))
        if a < b:
            assert parts[0].lo == a
            assert parts[-1].hi == b
        assert all(p.lo < p.hi for p in parts)
        assert all(x.hi == y.lo for x, y in itertools.pairwise(parts))


def test_local_days_of_whole_hour_zones_read_no_row() -> None:
    for zone in ("Europe/Paris", "America/New_York", "UTC"):
        for d in days_between(date(2025, 3, 1), date(2025, 4, 30), ZoneInfo(zone)):
            assert all(p.source != "rows" for p in split(Period(d.start, d.end))), (zone, d)


def test_revenue_days_of_every_zone_read_no_row() -> None:
    for zone in ZONES:
        for d in days_between(date(2025, 3, 1), date(2025, 4, 30), ZoneInfo(zone)):
            parts = split(Period(d.start, d.end), quarters=True)
            assert all(p.source != "rows" for p in parts), (zone, d)
