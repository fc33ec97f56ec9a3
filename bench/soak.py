"""A soak with faults: minutes of mixed traffic against two production gateway processes
(private PostgreSQL + Redis) while PostgreSQL and Redis restart, a gateway process is SIGKILLed
and restarted, the upstream fails, stalls and cuts streams, and callers leave mid-stream; then
every money invariant is checked against what the callers saw. Exit status 1 on any violation.

    python bench/soak.py                  # 10 minutes
    python bench/soak.py --short          # 60 s of traffic, under 2 minutes in all (the suite)
    python bench/soak.py --minutes 30 --rate 80 --users 60

Documented in bench/README.md ("Soak with faults"). Not a test of speed: nothing is timed.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from redis import Redis
from soak_checks import (
    Check,
    check_balances,
    check_credits,
    check_overdraft,
    check_payments,
    check_records,
    check_rss,
    check_usage_money,
    read_ledger,
    redis_balances,
)
from soak_money import ADMIN, Money
from soak_stack import Gateway, Stack, rss_mb
from soak_traffic import Traffic, summary

T0 = time.monotonic()
RESERVATION_TTL = 20.0
# Key limits, one per user's second key in turn (README "Keys and limits").
LIMITS: list[dict[str, Any]] = [
    {"rpm": 20},
    {"tpm": 3000},
    {"max_concurrent": 1},
    {"budget": {"amount": "0.02", "period": "total"}},
    {"budget": {"amount": "0.05", "period": "day", "tz": "Europe/Paris"}, "rpm": 40},
]


def log(msg: str) -> None:
    print(f"[soak {time.monotonic() - T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


def create_users(gw: Gateway, count: int) -> tuple[list[str], list[tuple[str, str]]]:
    """Users (one in four with little credit, one in five with a user-level rpm) with two keys
    each: one without limits and one with a limit of LIMITS."""
    users: list[str] = []
    keys: list[tuple[str, str]] = []
    with httpx.Client(base_url=gw.base, headers=ADMIN, timeout=30) as admin:
        for i in range(count):
            uid = f"soak-u{i:03d}"
            credit = "0.02" if i % 4 == 3 else "3.00"
            r = admin.post("/admin/users", json={"id": uid, "initial_credit": credit})
            r.raise_for_status()
            if i % 5 == 4:
                admin.patch(f"/admin/users/{uid}", json={"limits": {"rpm": 90}}).raise_for_status()
            for name, limits in (("open", None), ("limited", LIMITS[i % len(LIMITS)])):
                r = admin.post(f"/admin/users/{uid}/keys", json={"name": name, "limits": limits})
                r.raise_for_status()
                keys.append((uid, r.json()["key"]))
            users.append(uid)
    return users, keys


def schedule(duration: float) -> list[tuple[float, str]]:
    """When each infrastructure fault starts. gw-a is never killed, so its RSS spans the run;
    the last fault ends well before the traffic does, past the reservation TTL."""
    cycle = ("restart postgres", "restart redis", "kill gw-b")
    at, step = min(0.2 * duration, 30.0), min(0.17 * duration, 60.0)
    plan: list[tuple[float, str]] = []
    while at <= duration - RESERVATION_TTL - 10 or len(plan) < len(cycle):
        plan.append((at, cycle[len(plan) % len(cycle)]))
        at += step
    return plan


def fault(stack: Stack, action: str) -> float:
    """Runs one fault (blocking); returns how long the thing was down, seconds."""
    started = time.monotonic()
    if action == "restart postgres":
        assert stack.pg is not None
        stack.pg.stop()
        time.sleep(3)
        stack.pg.start()
    elif action == "restart redis":
        assert stack.redis is not None
        stack.redis.stop()
        time.sleep(2)
        stack.redis.start()
    else:
        gw = next(g for g in stack.gateways if g.name == action.split()[-1])
        gw.sigkill()
        time.sleep(2)
        gw.start()
    return time.monotonic() - started


class RssSampler:
    """RSS of each gateway generation: sampled from ``warmup`` s after it answered /healthz."""

    def __init__(self, gateways: list[Gateway], warmup: float) -> None:
        self.gateways, self.warmup = gateways, warmup
        self.samples: dict[tuple[str, int], list[float]] = {}

    def sample(self) -> None:
        now = time.monotonic()
        for gw in self.gateways:
            generation, ready_at = gw.ready
            if gw.alive() and generation == gw.generation and now - ready_at >= self.warmup:
                self.samples.setdefault((gw.name, generation), []).append(rss_mb(gw.pid))

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.sample()
            await asyncio.sleep(1.0)

    def flat(self) -> dict[str, tuple[float, float]]:
        return {
            f"{name} (start {gen})": (s[0], s[-1])
            for (name, gen), s in self.samples.items()
            if len(s) >= 2
        }


async def drain(stack: Stack, client: httpx.AsyncClient, within: float = 90) -> str:
    """Waits until every settlement is in PostgreSQL: the usage stream empty and no process
    holding settlements for Redis. Returns what was still pending after ``within`` seconds
    ('' if nothing)."""
    assert stack.redis is not None
    deadline = time.monotonic() + within
    pending = "?"
    while time.monotonic() < deadline:
        with Redis.from_url(stack.redis.url) as r:
            stream = int(r.xlen("gw:usage"))
        queued = 0
        for gw in stack.gateways:
            try:
                queued += int((await client.get(f"{gw.base}/readyz")).json()["settle_retry_queue"])
            except (httpx.HTTPError, KeyError, ValueError):
                queued += 1
        pending = f"{stream} in the usage stream, {queued} in settle retry queues"
        if stream == 0 and queued == 0:
            return ""
        await asyncio.sleep(0.5)
    return pending


async def soak(args: argparse.Namespace, stack: Stack, users: list[str],
               keys: list[tuple[str, str]]) -> tuple[list[Check], dict[str, Any]]:  # fmt: skip
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
    async with httpx.AsyncClient(limits=limits) as client:
        traffic = Traffic(client, stack.gateways, keys, rate=args.rate, in_flight=args.in_flight,
                          seed=args.seed)  # fmt: skip
        money = Money(client, stack.gateways, users, seed=args.seed + 1,
                      payments_per_s=args.payments, credits_per_s=args.credits)  # fmt: skip
        rss = RssSampler(stack.gateways, warmup=min(15.0, args.duration / 5))
        stop = asyncio.Event()
        workers = [asyncio.create_task(w.run(stop)) for w in (traffic, money, rss)]
        started = time.monotonic()
        faults: list[str] = []
        for at, action in schedule(args.duration):
            await asyncio.sleep(max(0.0, started + at - time.monotonic()))
            log(f"fault: {action}")
            down = await asyncio.to_thread(fault, stack, action)
            faults.append(f"{action} at {at:.0f} s ({down:.1f} s)")
        await asyncio.sleep(max(0.0, started + args.duration - time.monotonic()))
        stop.set()
        log("traffic stopped; waiting for calls in flight")
        await asyncio.gather(*workers)
        traffic_s = time.monotonic() - started
        undelivered = await money.settle_webhooks()
        pending = await drain(stack, client)
        log(f"drained{': still ' + pending if pending else ''}")
        last_kill = max((t for g in stack.gateways for t in g.killed_at.values()), default=0.0)
        # Reservations of a killed process expire; the reconciler runs every 5 s.
        await asyncio.sleep(max(6.0, last_kill + RESERVATION_TTL + 1 - time.monotonic()))
        rss.sample()
        deadline = time.monotonic() + 30
        while True:
            ledger = await asyncio.to_thread(read_ledger, stack.dsn)
            assert stack.redis is not None
            cached = redis_balances(stack.redis.url, users)
            named = {g.name: g for g in stack.gateways}
            checks = [
                check_usage_money(ledger),
                check_records(ledger, traffic.calls, named),
                check_payments(ledger, money.payments, undelivered),
                check_credits(ledger, money.credits),
                check_balances(ledger, cached, users),
                check_overdraft(ledger, users),
                check_rss(rss.flat(), slack_mb=args.rss_slack_mb, ratio=1.25),
            ]
            if pending:
                checks.append(Check("settlements drained", False, pending, [pending]))
            if all(c.ok for c in checks) or time.monotonic() > deadline:
                break
            await asyncio.sleep(3)  # the reconciler may still be repairing a balance
        facts = {
            "traffic_s": traffic_s,
            "traffic": summary(traffic.calls),
            "peak": traffic.peak,
            "faults": faults,
            "payments": len(money.payments),
            "deliveries": money.deliveries,
            "duplicates": money.duplicates,
            "retried": money.retried,
            "credits": len(money.credits),
            "credit_retries": money.credit_retries,
            "credit_duplicates": money.credit_duplicates,
            "cpu": {g.name: g.cpu() for g in stack.gateways},
            "logs": log_facts(stack),
        }
        return checks, facts


def log_facts(stack: Stack) -> dict[str, int]:
    """How often the gateways' own repair paths ran, from their logs."""
    marks = {
        "reconciler repairs": "reconciled ",
        "stream writer retries": "usage stream writer: ",
        "unhandled request errors": "Exception in ASGI application",
    }
    counts = dict.fromkeys(marks, 0)
    for gw in stack.gateways:
        text = (stack.workdir / f"{gw.name}.log").read_text(errors="replace")
        for name, mark in marks.items():
            counts[name] += text.count(mark)
    return counts


def report(args: argparse.Namespace, checks: list[Check], facts: dict[str, Any]) -> bool:
    t = facts["traffic"]
    lines = [
        "",
        f"soak summary: {facts['traffic_s']:.0f} s of traffic against 2 gateway processes "
        f"(PostgreSQL + Redis), {args.users} users, seed {args.seed}",
        f"  calls: {t['calls']:,} ({t['calls'] / facts['traffic_s']:.1f}/s, at most "
        f"{facts['peak']} open at once)",
        "  by status: " + ", ".join(f"{k}: {v}" for k, v in sorted(t["status"].items())),
        "  by outcome: " + ", ".join(f"{k}: {v}" for k, v in sorted(t["outcome"].items())),
        "  faults: " + "; ".join(facts["faults"]),
        f"  stripe: {facts['payments']} payments, {facts['deliveries']} deliveries "
        f"({facts['duplicates']} answered duplicate, {facts['retried']} retried after a failure)",
        f"  admin credits: {facts['credits']} ({facts['credit_retries']} sent again with their "
        f"reference, {facts['credit_duplicates']} of those answered duplicate)",
        "  gateway logs: " + ", ".join(f"{k}: {v}" for k, v in facts["logs"].items()),
        "  gateway CPU: " + ", ".join(f"{k} {v:.1f} s" for k, v in facts["cpu"].items()),
        "checks:",
    ]
    for c in checks:
        lines.append(f"  [{'ok' if c.ok else 'FAIL'}] {c.name}: {c.detail}")
        lines += [f"         - {p}" for p in c.problems[:15]]
        if len(c.problems) > 15:
            lines.append(f"         ... and {len(c.problems) - 15} more")
    failed = [c for c in checks if not c.ok]
    lines.append("soak passed" if not failed else f"soak FAILED: {len(failed)} checks violated")
    print("\n".join(lines), flush=True)
    return not failed


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0, help="traffic duration (default 10)")
    ap.add_argument("--short", action="store_true",
                    help="the suite's preset: 60 s, 8 users, 15 calls/s")  # fmt: skip
    ap.add_argument("--rate", type=float, help="calls per second (default 40; 15 with --short)")
    ap.add_argument("--in-flight", type=int, default=48, help="most calls open at once")
    ap.add_argument("--users", type=int, help="users, two keys each (default 30; 8 --short)")
    ap.add_argument("--payments", type=float, default=0.5, help="Stripe payments per second")
    ap.add_argument("--credits", type=float, default=0.5, help="admin credits per second")
    ap.add_argument("--rss-slack-mb", type=float, default=30.0,
                    help="RSS growth allowed besides 25 %% (default 30 MB)")  # fmt: skip
    ap.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    ap.add_argument("--keep", action="store_true", help="keep the work dir (logs) even if passed")
    args = ap.parse_args(argv)
    args.duration = 60.0 if args.short else args.minutes * 60
    args.rate = args.rate or (15.0 if args.short else 40.0)
    args.users = args.users or (8 if args.short else 30)
    args.seed = random.randrange(1_000_000) if args.seed is None else args.seed
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    workdir = Path(tempfile.mkdtemp(prefix="gateway-soak-"))
    stack = Stack(workdir, reservation_ttl=RESERVATION_TTL)
    passed = False
    try:
        log(f"starting PostgreSQL, Redis, the mock upstream and 2 gateways in {workdir}")
        stack.start()
        users, keys = create_users(stack.gateways[0], args.users)
        log(f"{len(users)} users, {len(keys)} keys; {args.duration:.0f} s of traffic "
            f"at {args.rate:g} calls/s (seed {args.seed})")  # fmt: skip
        checks, facts = asyncio.run(soak(args, stack, users, keys))
        passed = report(args, checks, facts)
    finally:
        stack.close()
        if passed and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log(f"logs kept in {workdir}")
    log(f"done in {time.monotonic() - T0:.0f} s")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
