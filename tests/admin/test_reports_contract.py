"""Stats and reports equal sums computed independently from the usage records, on SQLite and on
PostgreSQL (the ReportsLedger port, through the same services the API and CLI use)."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from gateway import reports
from gateway.errors import BadRequest
from gateway.ledger.base import Ledger
from gateway.money import format_usd
from gateway.pricing import Price, Usage, cost
from gateway.records import UsageRecord

MakeLedger = Callable[[], Awaitable[Ledger]]
USERS = ("alice", "bob", "carol", "dave")
MODELS = {  # model -> (provider, price)
    "gpt-4o": (
        "openai",
        Price(input=2_500_000_000, cached_input=1_250_000_000, output=10_000_000_000),
    ),
    "gpt-4o-mini": ("openai", Price(input=150_000_000, output=600_000_000)),
    "llama": ("local", Price(input=100_000_000, output=100_000_000)),
    "embed": ("openai", Price(input=20_000_000)),
}
# Spans both 2024 spring DST changes (New York 03-10, Paris 03-31).
START = datetime(2024, 3, 8, tzinfo=UTC)
SPAN = timedelta(days=26)


def run(make: MakeLedger, scenario: Callable[[Ledger], Awaitable[None]]) -> None:
    async def main() -> None:
        ledger = await make()
        try:
            await scenario(ledger)
        finally:
            await ledger.close()

    asyncio.run(main())


def record(n: int, user: str, model: str, at: datetime, rng: random.Random) -> UsageRecord:
    provider, price = MODELS[model]
    prompt = rng.randint(1, 5000)
    usage = Usage(
        prompt_tokens=prompt,
        completion_tokens=0 if model == "embed" else rng.randint(0, 2000),
        cached_tokens=rng.randint(0, prompt) if model == "gpt-4o" else 0,
    )
    usage = Usage(
        usage.prompt_tokens,
        usage.completion_tokens,
        usage.cached_tokens,
        reasoning_tokens=rng.randint(0, usage.completion_tokens),
    )
    failed = rng.random() < 0.1
    return UsageRecord(
        request_id=f"req_{n:05d}", user_id=user, key_id="key_1", model=model, provider=provider,
        endpoint="chat/completions", prompt_tokens=0 if failed else usage.prompt_tokens,
        completion_tokens=0 if failed else usage.completion_tokens,
        cached_tokens=0 if failed else usage.cached_tokens,
        reasoning_tokens=0 if failed else usage.reasoning_tokens, price_input=price.input,
        price_cached_input=price.cached_input, price_output=price.output,
        cost=0 if failed else cost(price, usage), status="upstream_error" if failed else "ok",
        usage_source="upstream", latency_ms=rng.randint(5, 900), created_at=at,
    )  # fmt: skip


def seed_records(count: int = 700, seed: int = 7) -> list[UsageRecord]:
    rng = random.Random(seed)
    out: list[UsageRecord] = []
    boundaries = [  # local midnights and the instants just around them
        datetime(2024, 3, 31, tzinfo=ZoneInfo("Europe/Paris")).astimezone(UTC),
        datetime(2024, 3, 10, tzinfo=ZoneInfo("America/New_York")).astimezone(UTC),
        datetime(2024, 3, 20, tzinfo=UTC),
    ]
    for n in range(count):
        if n < 30:
            at = boundaries[n % 3] + timedelta(microseconds=(n // 3 - 5))
        elif n < 50:
            at = START + timedelta(days=3)  # many rows at one instant: the tie-breaker counts
        else:
            at = START + timedelta(microseconds=rng.randrange(int(SPAN.total_seconds() * 1e6)))
        user = USERS[min(int(rng.expovariate(1.0)), len(USERS) - 1)]  # unequal spenders
        out.append(record(n, user, rng.choice(list(MODELS)), at, rng))
    return out


async def seeded(ledger: Ledger, records: list[UsageRecord]) -> None:
    for user in USERS:
        await ledger.directory.create_user(user_id=user, email=None)
        await ledger.journal.post_entry(
            user, kind="grant", amount=10**12, reference=f"grant:{user}"
        )
    for i in range(0, len(records), 200):
        await ledger.journal.write_usage(records[i : i + 200])


def sums(records: Iterable[UsageRecord], money: str) -> dict[str, Any]:
    rows = list(records)
    prompt = sum(r.prompt_tokens for r in rows)
    completion = sum(r.completion_tokens for r in rows)
    return {
        "requests": len(rows),
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "cached_tokens": sum(r.cached_tokens for r in rows),
        "reasoning_tokens": sum(r.reasoning_tokens for r in rows),
        "total_tokens": prompt + completion,
        money: format_usd(sum(r.cost for r in rows)),
    }


def only(view: dict[str, Any], money: str) -> dict[str, Any]:
    keys = (
        "requests",
        "prompt_tokens",
        "completion_tokens",
        "cached_tokens",
        "reasoning_tokens",
        "total_tokens",
        money,
    )
    return {k: view[k] for k in keys}


def within(
    records: list[UsageRecord], start: datetime | None, end: datetime | None
) -> list[UsageRecord]:
    return [
        r
        for r in records
        if (start is None or r.created_at >= start) and (end is None or r.created_at < end)
    ]


# -- stats ---------------------------------------------------------------------------------


def test_user_stats_equal_sums_of_their_usage_records(make_ledger: MakeLedger) -> None:
    records = seed_records()

    async def scenario(ledger: Ledger) -> None:
        await seeded(ledger, records)
        for user in (*USERS, "nobody"):
            mine = [r for r in records if r.user_id == user]
            got = await reports.stats(ledger, user, {})
            assert only(got, "cost") == sums(mine, "cost"), user
            by_model: dict[tuple[str, str], list[UsageRecord]] = defaultdict(list)
            for r in mine:
                by_model[(r.provider, r.model)].append(r)
            assert {(m["provider"], m["model"]): only(m, "cost") for m in got["models"]} == {
                k: sums(v, "cost") for k, v in by_model.items()
            }
            costs = [
                sum(r.cost for r in by_model[(m["provider"], m["model"])]) for m in got["models"]
            ]
            assert costs == sorted(costs, reverse=True)
            total = sum(r.cost for r in mine)
            expected_average = (2 * total + len(mine)) // (2 * len(mine)) if mine else 0
            assert got["average_cost"] == format_usd(expected_average)

    run(make_ledger, scenario)


def test_stats_over_a_date_range_count_whole_local_days(make_ledger: MakeLedger) -> None:
    records = seed_records()
    tz = ZoneInfo("Europe/Paris")

    async def scenario(ledger: Ledger) -> None:
        await seeded(ledger, records)
        got = await reports.stats(
            ledger, "alice", {"from": "2024-03-30", "to": "2024-03-31", "tz": "Europe/Paris"}
        )
        days = (date(2024, 3, 30), date(2024, 3, 31))
        expected = [
            r
            for r in records
            if r.user_id == "alice" and days[0] <= r.created_at.astimezone(tz).date() <= days[1]
        ]
        assert expected and only(got, "cost") == sums(expected, "cost")

    run(make_ledger, scenario)


# -- reports -------------------------------------------------------------------------------


@pytest.mark.parametrize("tz", ["UTC", "Europe/Paris", "America/New_York", "Asia/Kathmandu"])
def test_revenue_per_local_day_equals_sums(make_ledger: MakeLedger, tz: str) -> None:
    records = seed_records()
    zone = ZoneInfo(tz)

    async def scenario(ledger: Ledger) -> None:
        await seeded(ledger, records)
        got = await reports.revenue(ledger, {"from": "2024-03-07", "to": "2024-04-03", "tz": tz})
        by_day: dict[str, list[UsageRecord]] = defaultdict(list)
        for r in records:
            by_day[r.created_at.astimezone(zone).date().isoformat()].append(r)
        days = [d["day"] for d in got["data"]]
        assert days == sorted(days, reverse=True)  # newest first
        assert days[0] == "2024-04-03" and days[-1] == "2024-03-07" and len(days) == 28
        for row in got["data"]:
            assert only(row, "revenue") == sums(by_day.get(row["day"], []), "revenue"), row["day"]
        assert only(got["total"], "revenue") == sums(records, "revenue")
        assert got["tz"] == tz

    run(make_ledger, scenario)


def test_revenue_day_boundaries_follow_dst(make_ledger: MakeLedger) -> None:
    async def scenario(ledger: Ledger) -> None:
        got = await reports.revenue(
            ledger, {"from": "2024-03-30", "to": "2024-04-01", "tz": "Europe/Paris"}
        )
        spans = {
            d["day"]: (datetime.fromisoformat(d["end"]) - datetime.fromisoformat(d["start"]))
            for d in got["data"]
        }
        assert spans == {
            "2024-03-30": timedelta(hours=24),
            "2024-03-31": timedelta(hours=23),
            "2024-04-01": timedelta(hours=24),
        }
        assert got["total"]["requests"] == 0 and got["total"]["revenue"] == "0.00"

    run(make_ledger, scenario)


def test_revenue_with_instants_clips_the_first_and_last_day(make_ledger: MakeLedger) -> None:
    records = seed_records()
    start = datetime(2024, 3, 12, 15, 30, tzinfo=UTC)
    end = datetime(2024, 3, 15, 6, 0, tzinfo=UTC)

    async def scenario(ledger: Ledger) -> None:
        await seeded(ledger, records)
        got = await reports.revenue(ledger, {"from": start.isoformat(), "to": end.isoformat()})
        assert only(got["total"], "revenue") == sums(within(records, start, end), "revenue")
        assert got["data"][-1]["start"] == start.isoformat()
        assert got["data"][0]["end"] == end.isoformat()

    run(make_ledger, scenario)


def test_models_report_equals_sums_sorted_by_revenue(make_ledger: MakeLedger) -> None:
    records = seed_records()
    start, end = datetime(2024, 3, 15, tzinfo=UTC), datetime(2024, 3, 25, tzinfo=UTC)

    async def scenario(ledger: Ledger) -> None:
        await seeded(ledger, records)
        for params, rows in (
            ({}, records),
            ({"from": "2024-03-15", "to": "2024-03-24"}, within(records, start, end)),
        ):
            got = await reports.models(ledger, params)
            by_model: dict[str, list[UsageRecord]] = defaultdict(list)
            for r in rows:
                by_model[f"{r.provider}:{r.model}"].append(r)
            assert {m["id"]: only(m, "revenue") for m in got["data"]} == {
                k: sums(v, "revenue") for k, v in by_model.items()
            }
            revenues = [sum(r.cost for r in by_model[m["id"]]) for m in got["data"]]
            assert revenues == sorted(revenues, reverse=True)
            assert only(got["total"], "revenue") == sums(rows, "revenue")

    run(make_ledger, scenario)


def test_top_users_equal_sums_with_limit_and_has_more(make_ledger: MakeLedger) -> None:
    records = seed_records()

    async def scenario(ledger: Ledger) -> None:
        await seeded(ledger, records)
        per_user = {u: [r for r in records if r.user_id == u] for u in USERS}
        ranked = sorted(USERS, key=lambda u: (-sum(r.cost for r in per_user[u]), u))
        got = await reports.top_users(ledger, {"limit": "2"})
        assert [u["user_id"] for u in got["data"]] == ranked[:2]
        assert got["has_more"] is True
        for row in got["data"]:
            assert only(row, "revenue") == sums(per_user[row["user_id"]], "revenue")
        assert only(got["total"], "revenue") == sums(records, "revenue")
        everyone = await reports.top_users(ledger, {"limit": "10"})
        assert [u["user_id"] for u in everyone["data"]] == ranked
        assert everyone["has_more"] is False

    run(make_ledger, scenario)


def test_reports_on_an_empty_ledger_are_zeros(make_ledger: MakeLedger) -> None:
    async def scenario(ledger: Ledger) -> None:
        assert (await reports.models(ledger, {}))["data"] == []
        top = await reports.top_users(ledger, {})
        assert top["data"] == [] and top["total"]["revenue"] == "0.00"
        stats = await reports.stats(ledger, "nobody", {})
        assert stats["requests"] == 0 and stats["average_cost"] == "0.00"

    run(make_ledger, scenario)


# -- pagination ----------------------------------------------------------------------------


def test_cursor_pages_neither_skip_nor_repeat_while_calls_land(make_ledger: MakeLedger) -> None:
    records = [r for r in seed_records() if r.user_id == "alice"]
    rng = random.Random(3)

    async def scenario(ledger: Ledger) -> None:
        await seeded(ledger, records)
        seen: list[str] = []
        params: dict[str, str] = {"limit": "7"}
        n = 0
        while True:
            page = await reports.usage_page(ledger, "alice", params)
            seen += [r["request_id"] for r in page["data"]]
            # A call lands between pages (newer than everything listed so far).
            n += 1
            await ledger.journal.write_usage(
                [record(90_000 + n, "alice", "llama", datetime.now(UTC), rng)]
            )
            if not page["has_more"]:
                break
            params = {"limit": "7", "cursor": page["next_cursor"]}
        expected = sorted(records, key=lambda r: (r.created_at, r.request_id), reverse=True)
        assert seen == [r.request_id for r in expected]

    run(make_ledger, scenario)


def test_offset_pages_of_a_quiet_ledger_neither_skip_nor_repeat(make_ledger: MakeLedger) -> None:
    records = [r for r in seed_records() if r.user_id == "bob"]

    async def scenario(ledger: Ledger) -> None:
        await seeded(ledger, records)
        seen: list[str] = []
        offset = 0
        while True:
            page = await reports.usage_page(ledger, "bob", {"limit": "9", "offset": str(offset)})
            seen += [r["request_id"] for r in page["data"]]
            offset += 9
            if not page["has_more"]:
                break
        expected = sorted(records, key=lambda r: (r.created_at, r.request_id), reverse=True)
        assert seen == [r.request_id for r in expected]

    run(make_ledger, scenario)


COMMON_BAD = [
    {"tz": "Mars/Olympus"},
    {"tz": "../../etc/passwd"},
    {"from": "yesterday"},
    {"to": "2024-13-01"},
    {"from": "2024-05-02", "to": "2024-05-01"},
    {"from": "2024-05-02T10:00:00Z", "to": "2024-05-02T10:00:00Z"},
]


@pytest.mark.parametrize(
    ("report", "params"),
    [
        *(("revenue", p) for p in COMMON_BAD),
        *(("top_users", p) for p in COMMON_BAD),
        *(("models", p) for p in COMMON_BAD),
        ("revenue", {"from": "2000-01-01", "to": "2024-01-01"}),
        ("top_users", {"limit": "0"}),
        ("top_users", {"limit": "x"}),
        ("top_users", {"limit": "-1"}),
    ],
)
def test_bad_report_parameters_are_400(
    make_ledger: MakeLedger, report: str, params: dict[str, str]
) -> None:
    async def scenario(ledger: Ledger) -> None:
        with pytest.raises(BadRequest) as caught:
            await getattr(reports, report)(ledger, params)
        assert caught.value.status == 400
        assert caught.value.param in {"tz", "from", "to", "limit"}

    run(make_ledger, scenario)


def test_bad_cursor_is_400(make_ledger: MakeLedger) -> None:
    async def scenario(ledger: Ledger) -> None:
        for bad in ("nope", "bm9wZQ", "MjAyNA"):
            with pytest.raises(BadRequest):
                await reports.usage_page(ledger, "alice", {"cursor": bad})
        with pytest.raises(BadRequest):
            await reports.usage_page(ledger, "alice", {"cursor": "x", "offset": "3"})

    run(make_ledger, scenario)
