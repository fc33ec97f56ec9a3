"""The soak's end checks (bench/soak_checks.py) catch what they exist for: each is fed a ledger
with one planted violation (a record missing, money counted twice, a balance off by one) and
must fail it, and pass the same ledger without it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))  # scripts, not a package

from soak_checks import (
    Ledger,
    check_balances,
    check_credits,
    check_overdraft,
    check_payments,
    check_records,
    check_rss,
    check_usage_money,
)
from soak_money import Credit, Payment
from soak_stack import Gateway
from soak_traffic import Call


def entry(n: int, user: str, kind: str, amount: int, after: int, ref: str, **kw: Any) -> dict:
    return {"id": n, "user_id": user, "kind": kind, "amount": amount, "balance_after": after,
            "reference": ref, "reason": kw.get("reason")}  # fmt: skip


def record(rid: str, user: str = "u1", cost: int = 100, overdraft: int = 0) -> dict:
    return {"request_id": rid, "user_id": user, "cost": cost, "overdraft": overdraft,
            "status": "ok"}  # fmt: skip


def ledger() -> Ledger:
    """u1: a grant of 1,000, two calls of 100 (one settled), a Stripe top-up and a credit."""
    return Ledger(
        records=[record("req_1"), record("req_2", cost=0)],
        entries=[
            entry(1, "u1", "grant", 1000, 1000, "admin:init"),
            entry(2, "u1", "usage", -100, 900, "usage:req_1"),
            entry(3, "u1", "topup", 50_000_000, 50_000_900, "stripe:cs_1"),
            entry(4, "u1", "grant", 7, 50_000_907, "admin:x", reason="soak credit 1"),
        ],
        balances={"u1": 50_000_907},
    )


def call(rid: str | None, status: int, *, gateway: str = "gw-a", generation: int = 1) -> Call:
    return Call("chat", False, "", gateway, generation, "u1", 0.0, 10.0, status, None, rid)


GATEWAYS = {"gw-a": Gateway("gw-a", 1, {}, Path("."))}


def test_usage_money_fails_a_record_without_its_debit() -> None:
    good = ledger()
    assert check_usage_money(good).ok
    good.entries.pop(1)
    found = check_usage_money(good)
    assert not found.ok
    assert "req_1 cost 100 has no usage entry" in found.problems


def test_usage_money_fails_a_debit_of_the_wrong_amount() -> None:
    bad = ledger()
    bad.entries[1]["amount"] = -99
    assert not check_usage_money(bad).ok


@pytest.mark.parametrize(
    ("calls", "ok"),
    [
        ([call("req_1", 200), call("req_2", 504), call("req_3", 429)], True),
        ([call("req_1", 200), call("req_9", 200)], False),  # served, no record
        ([call("req_1", 402), call("req_2", 200)], False),  # refused, yet billed
        ([call("req_1", 200)], False),  # req_2 answered nobody and nothing went unanswered
        ([call("req_1", 200), call(None, 0)], True),  # ... unless a call went unanswered
    ],
)
def test_records_match_the_callers_log(calls: list[Call], ok: bool) -> None:
    assert check_records(ledger(), calls, GATEWAYS).ok is ok


def test_a_call_recorded_twice_fails() -> None:
    twice = ledger()
    twice.records.append(record("req_1"))
    found = check_records(twice, [call("req_1", 200), call("req_2", 200)], GATEWAYS)
    assert found.problems == ["req_1 has 2 usage records"]


def test_a_call_cut_by_a_sigkill_may_lack_its_record() -> None:
    killed = Gateway("gw-a", 1, {}, Path("."), killed_at={1: 11.0})
    calls = [call("req_1", 200), call("req_2", 200), call("req_9", 200)]
    assert check_records(ledger(), calls, {"gw-a": killed}).ok
    assert not check_records(ledger(), calls, GATEWAYS).ok


def test_payments_credited_once_and_failed_ones_never() -> None:
    paid = Payment("cs_1", "u1", 5, credit=True)
    assert check_payments(ledger(), [paid], undelivered=0).ok
    assert not check_payments(ledger(), [paid], undelivered=1).ok
    twice = ledger()
    twice.entries.append(entry(5, "u1", "topup", 50_000_000, 100_000_907, "stripe:cs_1"))
    assert not check_payments(twice, [paid], undelivered=0).ok
    failed = Payment("cs_1", "u1", 5, credit=False)
    assert not check_payments(ledger(), [failed], undelivered=0).ok
    assert not check_payments(ledger(), [], undelivered=0).ok  # a top-up nobody paid


@pytest.mark.parametrize(
    ("outcome", "ok"), [("applied", True), ("unknown", True), ("refused", False)]
)
def test_admin_credits_by_what_the_operator_was_answered(outcome: str, ok: bool) -> None:
    credit = Credit("soak credit 1", "u1", 7, outcome)
    assert check_credits(ledger(), [credit]).ok is ok


def test_a_credit_nobody_sent_fails() -> None:
    assert not check_credits(ledger(), []).ok


def test_balances_equal_their_entries_and_redis() -> None:
    good = ledger()
    assert check_balances(good, {"u1": (50_000_907, 0)}, ["u1"]).ok
    assert not check_balances(good, {"u1": (50_000_906, 0)}, ["u1"]).ok
    assert not check_balances(good, {"u1": None}, ["u1"]).ok
    good.balances["u1"] += 1
    assert not check_balances(good, {"u1": (50_000_908, 0)}, ["u1"]).ok


def test_a_broken_running_balance_fails() -> None:
    bad = ledger()
    bad.entries[1]["balance_after"] = 901
    assert not check_balances(bad, {"u1": (50_000_907, 0)}, ["u1"]).ok


def test_a_balance_goes_below_zero_only_by_its_overdraft() -> None:
    low = Ledger(
        records=[record("req_1", cost=1500, overdraft=400)],
        entries=[
            entry(1, "u1", "grant", 1000, 1000, "admin:init"),
            entry(2, "u1", "usage", -1500, -500, "usage:req_1"),
        ],
        balances={"u1": -500},
    )
    assert not check_overdraft(low, ["u1"]).ok
    low.records[0]["overdraft"] = 500
    assert check_overdraft(low, ["u1"]).ok


def test_rss_growth_past_the_slack_fails() -> None:
    assert check_rss({"gw-a": (100.0, 120.0)}, slack_mb=30, ratio=1.25).ok
    assert not check_rss({"gw-a": (100.0, 140.0)}, slack_mb=30, ratio=1.25).ok
