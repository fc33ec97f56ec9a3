"""What must hold after the soak, read from PostgreSQL and Redis and compared with what the
callers saw: every check gives a name, whether it held and the numbers behind it."""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from redis import Redis
from soak_money import Credit, Payment
from soak_stack import Gateway
from soak_traffic import Call, refused, served

NANOS_PER_CENT = 10_000_000
# A call whose gateway process was SIGKILLed while it ran, or up to this many seconds after it
# ended, may have died before its settlement reached Redis: it may lack a usage record (its
# reservation expires instead, as the README's failure table says).
KILL_WINDOW_S = 3.0


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    problems: list[str] = field(default_factory=list)


@dataclass
class Ledger:
    records: list[dict[str, Any]]
    entries: list[dict[str, Any]]
    balances: dict[str, int]


async def _read(dsn: str) -> Ledger:
    conn = await asyncpg.connect(dsn)
    try:
        records = await conn.fetch(
            "SELECT request_id, user_id, cost, overdraft, status FROM usage_records"
        )
        entries = await conn.fetch(
            "SELECT id, user_id, kind, amount, balance_after, reference, reason"
            " FROM ledger_entries ORDER BY id"
        )
        users = await conn.fetch("SELECT id, balance FROM users")
    finally:
        await conn.close()
    return Ledger(
        [dict(r) for r in records],
        [dict(e) for e in entries],
        {u["id"]: int(u["balance"]) for u in users},
    )


def read_ledger(dsn: str) -> Ledger:
    return asyncio.run(_read(dsn))


def redis_balances(url: str, users: Sequence[str]) -> dict[str, tuple[int, int] | None]:
    """(bal, res) Redis holds per user; None for a user it holds no balance of."""
    with Redis.from_url(url) as r:
        out: dict[str, tuple[int, int] | None] = {}
        for uid in users:
            bal, res = r.hmget(f"gw:u:{uid}", ["bal", "res"])
            out[uid] = None if bal is None else (int(bal), int(res or 0))
        return out


def _maybe_lost(call: Call, gateways: dict[str, Gateway]) -> bool:
    killed = gateways[call.gateway].killed_at.get(call.generation)
    return killed is not None and call.ended >= killed - KILL_WINDOW_S


def check_usage_money(ledger: Ledger) -> Check:
    usage = {
        e["reference"].removeprefix("usage:"): e for e in ledger.entries if e["kind"] == "usage"
    }
    cost = sum(int(r["cost"]) for r in ledger.records)
    debits = -sum(int(e["amount"]) for e in usage.values())
    problems = []
    for r in ledger.records:
        entry = usage.pop(r["request_id"], None)
        if r["cost"] > 0 and entry is None:
            problems.append(f"{r['request_id']} cost {r['cost']} has no usage entry")
        elif entry is not None and (
            entry["amount"] != -r["cost"] or entry["user_id"] != r["user_id"]
        ):
            problems.append(f"{r['request_id']}: entry {entry['amount']} vs cost {r['cost']}")
        elif r["cost"] == 0 and entry is not None:
            problems.append(f"{r['request_id']} costs nothing but has an entry")
    problems += [f"usage entry {ref} has no usage record" for ref in usage]
    ok = cost == debits and not problems
    return Check("Σ usage cost == Σ usage debits", ok,
                 f"{cost:,} == {debits:,} nano-USD over {len(ledger.records):,} records",
                 problems)  # fmt: skip


def check_records(ledger: Ledger, calls: Sequence[Call], gateways: dict[str, Gateway]) -> Check:
    records = {r["request_id"]: r for r in ledger.records}
    seen_ids = {c.request_id for c in calls if c.request_id}
    # Partitioned by month, the table's key includes the time: one id could be stored twice.
    twice = Counter(r["request_id"] for r in ledger.records)
    problems = [f"{rid} has {n} usage records" for rid, n in twice.items() if n > 1]
    must = maybe = refusals = 0
    for c in calls:
        if c.request_id is None:
            continue
        found = c.request_id in records
        if refused(c):
            refusals += 1
            if found:
                problems.append(f"refused call {c.request_id} ({c.status} {c.code}) has a record")
        elif served(c) and _maybe_lost(c, gateways):
            maybe += 1
        elif served(c):
            must += 1
            if not found:
                problems.append(
                    f"served call {c.request_id} ({c.endpoint} {c.fault or 'ok'} "
                    f"{c.status} {c.outcome}) has no usage record"
                )
    unknown = sum(1 for c in calls if c.sent and c.request_id is None)
    orphans = [rid for rid in records if rid not in seen_ids]
    if len(orphans) > unknown:
        problems.append(f"{len(orphans)} records of calls never answered, but only {unknown} "
                        "calls went unanswered")  # fmt: skip
    ok = not problems
    detail = (
        f"{must:,} served calls each have their record; {refusals:,} refused calls have none; "
        f"{maybe:,} calls cut by a SIGKILL, {unknown:,} unanswered calls, "
        f"{len(orphans):,} records of unanswered calls"
    )
    return Check("one usage record per served call", ok, detail, problems)


def check_payments(ledger: Ledger, payments: Sequence[Payment], undelivered: int) -> Check:
    topups = [e for e in ledger.entries if e["kind"] == "topup"]
    by_ref = Counter(e["reference"] for e in topups)
    problems = [f"{undelivered} events were never answered 200"] if undelivered else []
    known = set()
    for p in payments:
        ref = f"stripe:{p.session}"
        known.add(ref)
        want = 1 if p.credit else 0
        if by_ref[ref] != want:
            problems.append(f"{ref} credited {by_ref[ref]} times, wanted {want}")
        for e in topups:
            if e["reference"] == ref and (
                e["amount"] != p.cents * NANOS_PER_CENT or e["user_id"] != p.user
            ):
                problems.append(f"{ref}: {e['amount']} to {e['user_id']}, wanted "
                                f"{p.cents * NANOS_PER_CENT} to {p.user}")  # fmt: skip
    problems += [f"unexpected top-up {ref}" for ref in by_ref if ref not in known]
    credited = sum(1 for p in payments if p.credit)
    return Check("every Stripe payment credited exactly once", not problems,
                 f"{credited} payments credited once, {len(payments) - credited} failed ones "
                 "never", problems)  # fmt: skip


def check_credits(ledger: Ledger, credits: Sequence[Credit]) -> Check:
    grants = Counter(
        (e["reason"], e["user_id"])
        for e in ledger.entries
        if e["kind"] == "grant" and (e["reason"] or "").startswith("soak ")
    )
    problems = []
    landed: Counter[str] = Counter()
    for c in credits:
        n = grants.pop((c.reason, c.user), 0)
        if c.outcome == "unknown" and n:
            landed[f"answered {c.status}" if c.status else "unanswered"] += 1
        allowed = {"applied": (1,), "refused": (0,), "unknown": (0, 1)}[c.outcome]
        if n not in allowed:
            problems.append(f"{c.reason} for {c.user} ({c.outcome}) applied {n} times")
    problems += [f"grant {key} nobody sent" for key in grants]
    outcomes = Counter(c.outcome for c in credits)
    detail = ", ".join(f"{n} {o}" for o, n in sorted(outcomes.items()))
    if outcomes["unknown"]:
        # Answered 5xx or not at all (PostgreSQL restarting): committed or not, never twice.
        how = ", ".join(f"{n} {k}" for k, n in sorted(landed.items()))
        detail += f" ({sum(landed.values())} of the unknown landed{': ' + how if how else ''})"
    return Check("admin credits applied once each", not problems, detail, problems)


def check_balances(
    ledger: Ledger, redis: dict[str, tuple[int, int] | None], users: Sequence[str]
) -> Check:
    sums: dict[str, int] = defaultdict(int)
    last: dict[str, int] = {}
    problems = []
    for e in ledger.entries:
        before = last.get(e["user_id"], 0)
        if e["balance_after"] != before + e["amount"]:
            problems.append(f"entry {e['id']} of {e['user_id']}: balance_after "
                            f"{e['balance_after']} != {before} + {e['amount']}")  # fmt: skip
        last[e["user_id"]] = e["balance_after"]
        sums[e["user_id"]] += e["amount"]
    reserved = 0
    for uid in users:
        stored = ledger.balances.get(uid)
        if stored != sums[uid]:
            problems.append(f"{uid}: balance {stored} != Σ entries {sums[uid]}")
        cached = redis.get(uid)
        if cached is None:
            problems.append(f"{uid}: Redis holds no balance")
        elif cached[0] != stored:
            problems.append(f"{uid}: Redis {cached[0]} != ledger {stored}")
        else:
            reserved += cached[1]
    return Check("every balance == Σ its entries == Redis", not problems,
                 f"{len(users)} users; {reserved} nano-USD still reserved in Redis",
                 problems)  # fmt: skip


def check_overdraft(ledger: Ledger, users: Sequence[str]) -> Check:
    """A balance goes below zero only by what calls cost past their reservations (README,
    Overdraft): never below minus the user's overdraft total, and never at all without one."""
    overdraft: dict[str, int] = defaultdict(int)
    for r in ledger.records:
        overdraft[r["user_id"]] += int(r["overdraft"])
    lowest: dict[str, int] = {}
    for e in ledger.entries:
        lowest[e["user_id"]] = min(lowest.get(e["user_id"], 0), int(e["balance_after"]))
    problems = [
        f"{uid}: lowest balance {lowest.get(uid, 0)} below -{overdraft[uid]} (its overdraft)"
        for uid in users
        if lowest.get(uid, 0) < -overdraft[uid]
    ]
    below = sum(1 for uid in users if lowest.get(uid, 0) < 0)
    total = sum(overdraft.values())
    return Check("no balance below its overdraft rule", not problems,
                 f"{below} users went below zero, by at most their overdraft "
                 f"({total:,} nano-USD over {sum(1 for r in ledger.records if r['overdraft'])} "
                 "calls)", problems)  # fmt: skip


def check_rss(rss: dict[str, tuple[float, float]], *, slack_mb: float, ratio: float) -> Check:
    problems = [
        f"{name}: {start:.0f} -> {end:.0f} MB"
        for name, (start, end) in rss.items()
        if end > max(start * ratio, start + slack_mb)
    ]
    detail = "; ".join(f"{name} {s:.0f} -> {e:.0f} MB" for name, (s, e) in rss.items())
    return Check("gateway RSS flat", not problems, detail, problems)
