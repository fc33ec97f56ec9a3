"""The "speed against the floor" summary of bench/run.py: pure functions over wrk cells.

A cell is the dict ``run.wrk`` returns plus ``round`` (0-based). Rounds interleave every
target at one connection count, so a ratio taken within one round compares targets that ran
under the same machine load; the summary gives the median over rounds and the spread
(min-max). CPU per call counts every process that does the work: the gateway's process tree
(event loop, SQLite writer thread, workers) plus PostgreSQL and Redis in production.
"""

from __future__ import annotations

import statistics
from typing import Any

# The targets. ratio: calls/s over the floor's at 8 connections, same round.
TARGETS: dict[str, dict[str, float]] = {
    "embedded": {"ratio_c8": 0.70, "added_p50_ms_c1": 0.25, "cpu_us_c8": 190.0},
    "production": {"ratio_c8": 0.50, "added_p50_ms_c1": 0.50, "cpu_us_c8": 300.0},
}
RSS_TARGET_MB = 150.0
ORDER = ("direct", "floor", "passthrough", "embedded", "production")


def total_cpu(cell: dict[str, Any]) -> float | None:
    """CPU µs per call of the target's processes plus its servers (PostgreSQL, Redis)."""
    own = cell.get("cpu_us_per_call")
    if own is None:
        return None
    return own + (cell.get("servers_cpu_us_per_call") or 0.0)


def _stats(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def summarize(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (target, connections): medians and spreads over rounds, and per-round
    ratios against the floor (calls/s) and added p50 against direct (ms)."""
    by_key: dict[tuple[int, int, str], dict[str, Any]] = {}
    for c in cells:
        by_key[(c["round"], c["connections"], c["target"])] = c
    rows = []
    conns = sorted({c["connections"] for c in cells})
    names = [n for n in ORDER if any(c["target"] == n for c in cells)]
    for n in conns:
        for name in names:
            mine = [c for c in cells if c["target"] == name and c["connections"] == n]
            if not mine:
                continue
            ratios, added = [], []
            for c in mine:
                floor = by_key.get((c["round"], n, "floor"))
                direct = by_key.get((c["round"], n, "direct"))
                if floor and floor["calls_per_s"]:
                    ratios.append(c["calls_per_s"] / floor["calls_per_s"])
                if direct and name != "direct":
                    added.append(c["p50_ms"] - direct["p50_ms"])
            cpu = [v for c in mine if (v := total_cpu(c)) is not None]
            srv = [c["servers_cpu_us_per_call"] for c in mine if c.get("servers_cpu_us_per_call")]
            loop = [c["loop_cpu_us_per_call"] for c in mine if c.get("loop_cpu_us_per_call")]
            rows.append(
                {
                    "target": name,
                    "connections": n,
                    "calls_per_s": _stats([c["calls_per_s"] for c in mine]),
                    "ratio_to_floor": _stats(ratios),
                    "p50_ms": _stats([c["p50_ms"] for c in mine]),
                    "added_p50_ms": _stats(added),
                    "cpu_us_per_call": _stats(cpu),
                    "servers_cpu_us_per_call": _stats(srv),
                    "loop_cpu_us_per_call": _stats(loop),
                    "errors": sum(c["errors"] for c in mine),
                    "other_load_cores": _stats(
                        [
                            c["other_load_cores"]
                            for c in mine
                            if c.get("other_load_cores") is not None
                        ]
                    ),
                }
            )
    return rows


def _fmt(s: dict[str, float] | None, digits: int, pct: bool = False) -> str:
    if s is None:
        return "-"
    k = 100.0 if pct else 1.0
    unit = " %" if pct else ""
    med = f"{s['median'] * k:,.{digits}f}{unit}"
    if s["n"] < 2:
        return med
    return f"{med} ({s['min'] * k:,.{digits}f}-{s['max'] * k:,.{digits}f})"


def evaluate(rows: list[dict[str, Any]], memory: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets against the medians: check, value, target, ok (None: not run)."""
    at = {(r["target"], r["connections"]): r for r in rows}
    out = []
    for name, t in TARGETS.items():
        r8, r1 = at.get((name, 8)), at.get((name, 1))
        if r8 and r8["ratio_to_floor"]:
            v = r8["ratio_to_floor"]["median"]
            out.append(
                _check(
                    f"{name}: calls/s at 8 conns / floor's",
                    f"{v:.0%}",
                    f"≥ {t['ratio_c8']:.0%}",
                    v >= t["ratio_c8"],
                )
            )
        if r1 and r1["added_p50_ms"]:
            v = r1["added_p50_ms"]["median"]
            out.append(
                _check(
                    f"{name}: added p50 at 1 conn",
                    f"{v:.3f} ms",
                    f"≤ {t['added_p50_ms_c1']} ms",
                    v <= t["added_p50_ms_c1"],
                )
            )
        if r8 and r8["cpu_us_per_call"]:
            v = r8["cpu_us_per_call"]["median"]
            out.append(
                _check(
                    f"{name}: CPU per call at 8 conns (all processes)",
                    f"{v:,.0f} µs",
                    f"≤ {t['cpu_us_c8']:,.0f} µs",
                    v <= t["cpu_us_c8"],
                )
            )
        mem = memory.get(name, {})
        if mem.get("after"):
            calls = mem["calls_total"]
            rss = mem["after"]["rss_mb"]
            out.append(
                _check(
                    f"{name}: RSS after {calls:,} calls",
                    f"{rss:.1f} MB",
                    f"≤ {RSS_TARGET_MB:.0f} MB after 1M calls",
                    rss <= RSS_TARGET_MB if calls >= 1_000_000 else None,
                )
            )
    return out


def _check(check: str, value: str, target: str, ok: bool | None) -> dict[str, Any]:
    return {"check": check, "value": value, "target": target, "ok": ok}


def render(res: dict[str, Any]) -> str:
    rows = res.get("speed_summary") or []
    if not rows:
        return ""
    rounds = max((c["round"] for c in res.get("speed", [])), default=0) + 1
    out = [
        f"Against the floor (wrk -t1, {res['plan']['measure_s']} s cells, {rounds} interleaved "
        "round(s); median, and (min-max) over rounds; ratios and added p50 are taken within "
        "each round). CPU per call counts every process doing the work: the gateway's whole "
        "process tree (loop, SQLite writer thread) plus PostgreSQL and Redis in production; "
        "of it, the event loop threads' share, and that of PostgreSQL and Redis.",
        "",
        "| target | conns | calls/s | vs floor | p50 ms | added p50 ms | CPU µs/call "
        "| of which event loop | of which PG+Redis | errors | other load |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        out.append(
            f"| {r['target']} | {r['connections']} | {_fmt(r['calls_per_s'], 0)} | "
            f"{_fmt(r['ratio_to_floor'], 0, pct=True)} | {_fmt(r['p50_ms'], 3)} | "
            f"{_fmt(r['added_p50_ms'], 3)} | {_fmt(r['cpu_us_per_call'], 0)} | "
            f"{_fmt(r.get('loop_cpu_us_per_call'), 0)} | "
            f"{_fmt(r['servers_cpu_us_per_call'], 0)} | {r['errors']} | "
            f"{_fmt(r['other_load_cores'], 2)} |"
        )
    checks = res.get("speed_targets") or []
    if checks:
        out += ["", "| target check | value | target | met |", "|---|---:|---:|:---:|"]
        for c in checks:
            met = {True: "yes", False: "**no**", None: "n/a"}[c["ok"]]
            out.append(f"| {c['check']} | {c['value']} | {c['target']} | {met} |")
    return "\n".join(out) + "\n"
