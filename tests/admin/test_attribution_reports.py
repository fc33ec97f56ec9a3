"""Breakdowns by key, tag, end user and session equal sums computed independently from the
usage records, on SQLite and on PostgreSQL (the Reports port, through the services the API
and CLI use)."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace

import pytest

from gateway import reports
from gateway.errors import BadRequest
from gateway.ledger.base import Ledger
from gateway.records import UsageRecord
from tests.admin.test_reports_contract import (
    START,
    MakeLedger,
    only,
    run,
    seed_records,
    seeded,
    sums,
    within,
)

TAGS = ("team:search", "team:ads", "env=prod", "batch")


def attributed(records: list[UsageRecord], seed: int = 11) -> list[UsageRecord]:
    """The seeded records with keys, end users, tags (0 to 3, some shared) and sessions; some
    calls have none of them."""
    rng = random.Random(seed)
    out = []
    for r in records:
        out.append(
            replace(
                r,
                key_id=rng.choice(("key_a", "key_b", "key_c", None)),
                end_user=rng.choice(("eu-1", "eu-2", "eu-3", None)),
                tags=tuple(rng.sample(TAGS, rng.randint(0, 3))),
                session_id=rng.choice((None, *(f"s{i}" for i in range(12)))),
            )
        )
    return out


GROUPED: dict[str, tuple[str, Callable[[UsageRecord], list[str | None]]]] = {
    "key": ("key_id", lambda r: [r.key_id]),
    "end_user": ("end_user", lambda r: [r.end_user]),
    "session": ("session_id", lambda r: [r.session_id]),
    "tag": ("tag", lambda r: list(r.tags) or [None]),
}


def expected_groups(
    records: list[UsageRecord], group_by: str
) -> dict[str | None, list[UsageRecord]]:
    groups: dict[str | None, list[UsageRecord]] = defaultdict(list)
    for r in records:
        for value in GROUPED[group_by][1](r):
            groups[value].append(r)
    return groups


@pytest.mark.parametrize("group_by", list(GROUPED))
def test_stats_by_attribute_equal_sums_of_the_records(
    make_ledger: MakeLedger, group_by: str
) -> None:
    records = attributed(seed_records())
    name = GROUPED[group_by][0]

    async def scenario(ledger: Ledger) -> None:
        await seeded(ledger, records)
        for user in ("alice", "bob"):
            mine = [r for r in records if r.user_id == user]
            got = await reports.stats(ledger, user, {"group_by": group_by, "limit": "1000"})
            assert only(got, "cost") == sums(mine, "cost")  # every call counted once
            expected = expected_groups(mine, group_by)
            assert {g[name]: only(g, "cost") for g in got["groups"]} == {
                k: sums(v, "cost") for k, v in expected.items()
            }
            costs = [sum(r.cost for r in expected[g[name]]) for g in got["groups"]]
            assert costs == sorted(costs, reverse=True)
            assert got["has_more"] is False
            assert got["group_by"] == group_by
            assert "models" not in got

    run(make_ledger, scenario)


@pytest.mark.parametrize("group_by", list(GROUPED))
def test_usage_report_by_attribute_over_a_range_with_limit(
    make_ledger: MakeLedger, group_by: str
) -> None:
    records = attributed(seed_records())
    name = GROUPED[group_by][0]
    start, end = START.replace(day=15), START.replace(day=25)

    async def scenario(ledger: Ledger) -> None:
        await seeded(ledger, records)
        rows = within(records, start, end)
        params = {"group_by": group_by, "from": "2024-03-15", "to": "2024-03-24"}
        got = await reports.usage_report(ledger, params)
        expected = expected_groups(rows, group_by)
        assert {g[name]: only(g, "revenue") for g in got["data"]} == {
            k: sums(v, "revenue") for k, v in expected.items()
        }
        assert only(got["total"], "revenue") == sums(rows, "revenue")
        ranked = sorted(expected, key=lambda k: -sum(r.cost for r in expected[k]))
        top = await reports.usage_report(ledger, {**params, "limit": "2"})
        assert [g[name] for g in top["data"]] == ranked[:2]
        assert top["has_more"] is True
        one = await reports.usage_report(ledger, {**params, "user": "carol"})
        carol = [r for r in rows if r.user_id == "carol"]
        assert only(one["total"], "revenue") == sums(carol, "revenue")

    run(make_ledger, scenario)


def test_model_breakdown_keeps_its_shape(make_ledger: MakeLedger) -> None:
    records = attributed(seed_records())

    async def scenario(ledger: Ledger) -> None:
        await seeded(ledger, records)
        plain = await reports.stats(ledger, "alice", {})
        grouped = await reports.stats(ledger, "alice", {"group_by": "model"})
        assert grouped["models"] == grouped["groups"] == plain["models"]
        report = await reports.usage_report(ledger, {})
        assert report["group_by"] == "model"
        assert only(report["total"], "revenue") == sums(records, "revenue")

    run(make_ledger, scenario)


@pytest.mark.parametrize("params", [{"group_by": "colour"}, {"group_by": "tag", "limit": "0"}])
def test_bad_group_by_is_400(make_ledger: MakeLedger, params: dict[str, str]) -> None:
    async def scenario(ledger: Ledger) -> None:
        for call in (reports.stats(ledger, "alice", params), reports.usage_report(ledger, params)):
            with pytest.raises(BadRequest) as caught:
                await call
            assert caught.value.param in {"group_by", "limit"}

    run(make_ledger, scenario)
