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

    def settled(self, record: UsageRecord, balance: int | None) -> Sequence[Header]:
        """A settlement listener: counts every settled call, whatever the balance."""
        self.calls[(record.endpoint, record.model, record.status)] += 1
        self.cost[record.model] += record.cost
        self.tokens[(record.model, "prompt")] += record.prompt_tokens
        self.tokens[(record.model, "completion")] += record.completion_tokens
        return ()

    def refusal(self, status: int) -> None:
        self.refused[status] += 1

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
            "# HELP gateway_refused_total Calls refused before reaching a provider.",
            "# TYPE gateway_refused_total counter",
        ]
        for refused, n in sorted(self.refused.items()):
            lines.append(f'gateway_refused_total{{status="{refused}"}} {n}')
        for name, value in gauges.items():
            lines += [f"# TYPE {name} gauge", f"{name} {value}"]
        return "\n".join(lines) + "\n"
