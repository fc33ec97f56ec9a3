"""Prometheus text exposition of a few counters, kept in plain dicts (no client library:
the hot path only increments integers)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from gateway.listeners import Header
from gateway.records import UsageRecord


@dataclass
class Metrics:
    calls: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    cost: Counter[str] = field(default_factory=Counter)
    tokens: Counter[tuple[str, str]] = field(default_factory=Counter)
    refused: Counter[int] = field(default_factory=Counter)
    reconcile_runs: int = 0
    reconcile_repairs: int = 0
    reconcile_repaired: int = 0  # nano-USD, signed sum of the repaired deltas
    overdrafts: int = 0
    overdrafted: int = 0  # nano-USD billed above the calls' reservations
    # Upstream attempts by (model, deployment, result) and fallbacks by (model, from, to):
    # gateway.routing reports them as they happen.
    attempts: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    fallbacks: Counter[tuple[str, str, str]] = field(default_factory=Counter)

    def settled(self, record: UsageRecord, balance: int | None) -> Sequence[Header]:
        """A settlement listener: counts every settled call, whatever the balance."""
        self.calls[(record.endpoint, record.model, record.status)] += 1
        self.cost[record.model] += record.cost
        self.tokens[(record.model, "prompt")] += record.prompt_tokens
        self.tokens[(record.model, "completion")] += record.completion_tokens
        if record.overdraft > 0:
            self.overdrafts += 1
            self.overdrafted += record.overdraft
        return ()

    def attempted(self, model: str, deployment: str, result: str) -> None:
        self.attempts[(model, deployment, result)] += 1

    def fell_back(self, model: str, failed: str, to: str) -> None:
        self.fallbacks[(model, failed, to)] += 1

    def refusal(self, status: int) -> None:
        self.refused[status] += 1

    def reconciled(self, amount: int) -> None:
        self.reconcile_repairs += 1
        self.reconcile_repaired += amount

    def render(self, gauges: dict[str, int]) -> str:
        lines = [
            "# HELP gateway_calls_total Settled calls by endpoint, model and status.",
            "# TYPE gateway_calls_total counter",
        ]
        for (endpoint, model, status), n in sorted(self.calls.items()):
            lines.append(
                f'gateway_calls_total{{endpoint="{endpoint}",model="{model}",'
                f'status="{status}"}} {n}'
            )
        lines += [
            "# HELP gateway_billed_nanousd_total Cost billed, in nano-USD.",
            "# TYPE gateway_billed_nanousd_total counter",
        ]
        for model, n in sorted(self.cost.items()):
            lines.append(f'gateway_billed_nanousd_total{{model="{model}"}} {n}')
        lines += [
            "# HELP gateway_tokens_total Tokens billed by kind.",
            "# TYPE gateway_tokens_total counter",
        ]
        for (model, kind), n in sorted(self.tokens.items()):
            lines.append(f'gateway_tokens_total{{model="{model}",kind="{kind}"}} {n}')
        lines += [
            "# HELP gateway_upstream_attempts_total Upstream attempts by model, deployment and"
            " result (answered, or the failure that led to a retry or ended the call).",
            "# TYPE gateway_upstream_attempts_total counter",
        ]
        for (model, deployment, result), n in sorted(self.attempts.items()):
            lines.append(
                f'gateway_upstream_attempts_total{{model="{model}",deployment="{deployment}",'
                f'result="{result}"}} {n}'
            )
        lines += [
            "# HELP gateway_upstream_fallbacks_total Calls passed from a failed deployment to"
            " another one.",
            "# TYPE gateway_upstream_fallbacks_total counter",
        ]
        for (model, failed, to), n in sorted(self.fallbacks.items()):
            lines.append(
                f'gateway_upstream_fallbacks_total{{model="{model}",from="{failed}",to="{to}"}} {n}'
            )
        lines += [
            "# HELP gateway_refused_total Calls refused before reaching a provider.",
            "# TYPE gateway_refused_total counter",
        ]
        for refused, n in sorted(self.refused.items()):
            lines.append(f'gateway_refused_total{{status="{refused}"}} {n}')
        lines += [
            "# HELP gateway_reconcile_runs_total Reconciler passes over the cached balances.",
            "# TYPE gateway_reconcile_runs_total counter",
            f"gateway_reconcile_runs_total {self.reconcile_runs}",
            "# HELP gateway_reconcile_repairs_total Committed ledger entries the balance store"
            " had missed, applied by the reconciler.",
            "# TYPE gateway_reconcile_repairs_total counter",
            f"gateway_reconcile_repairs_total {self.reconcile_repairs}",
            "# HELP gateway_reconcile_repaired_nanousd_total Signed sum of those entries.",
            "# TYPE gateway_reconcile_repaired_nanousd_total counter",
            f"gateway_reconcile_repaired_nanousd_total {self.reconcile_repaired}",
            "# HELP gateway_overdraft_total Calls that cost more than they had reserved (billed"
            " whole; the balance may go below zero).",
            "# TYPE gateway_overdraft_total counter",
            f"gateway_overdraft_total {self.overdrafts}",
            "# HELP gateway_overdraft_nanousd_total Sum of what those calls cost above their"
            " reservations.",
            "# TYPE gateway_overdraft_nanousd_total counter",
            f"gateway_overdraft_nanousd_total {self.overdrafted}",
        ]
        for name, value in gauges.items():
            lines += [f"# TYPE {name} gauge", f"{name} {value}"]
        return "\n".join(lines) + "\n"
