"""Token counts and unit prices -> cost in nano-USD (pure).

Prices are nano-USD per 1M tokens. Cached prompt tokens are a subset of prompt tokens and are
charged at the cached price (the input price when no cached price is set); reasoning tokens are
a subset of completion tokens and are charged as output.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.money import ceil_div

PER = 1_000_000


@dataclass(frozen=True, slots=True)
class Price:
    input: int
    output: int = 0
    cached_input: int | None = None

    def as_dict(self) -> dict[str, int | None]:
        return {"input": self.input, "cached_input": self.cached_input, "output": self.output}


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0


def cost(price: Price, usage: Usage) -> int:
    """Exact cost, rounded up once to a whole nano-dollar (see gateway.money)."""
    cached = min(max(usage.cached_tokens, 0), max(usage.prompt_tokens, 0))
    uncached = max(usage.prompt_tokens, 0) - cached
    cached_price = price.input if price.cached_input is None else price.cached_input
    total = (
        uncached * price.input
        + cached * cached_price
        + max(usage.completion_tokens, 0) * price.output
    )
    return ceil_div(total, PER)


def worst_case(price: Price, prompt_tokens: int, output_cap: int) -> int:
    """The reservation: every prompt token at the dearer input price, every allowed output
    token produced (a cached price above the input price is odd but must not under-reserve)."""
    dearest = max(price.input, price.cached_input or 0)
    return ceil_div(prompt_tokens * dearest + output_cap * price.output, PER)


def affordable_output(price: Price, prompt_tokens: int, available: int) -> int:
    """The largest output cap whose worst case fits in ``available`` (-1: not even the prompt)."""
    if worst_case(price, prompt_tokens, 0) > available:
        return -1
    if price.output <= 0:
        return 1 << 31
    dearest = max(price.input, price.cached_input or 0)
    # largest n with ceil((p_in*prompt + n*p_out)/PER) <= available
    n = (available * PER - prompt_tokens * dearest) // price.output
    while n > 0 and worst_case(price, prompt_tokens, n) > available:
        n -= 1
    return max(n, 0)
