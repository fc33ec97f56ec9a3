"""Token counts and unit prices -> cost in nano-USD (pure), and the quote admission reserves.

Prices are nano-USD per 1M tokens, one per token class (``Price``). The prompt splits into
disjoint classes, each charged at its own price: cached reads (``cached_input``), cache writes
at the short TTL (``cache_write``), cache writes at the 1-hour TTL (``cache_write_1h``), audio
(``audio_input``) and the rest (``input``); the output into audio (``audio_output``) and the
rest, reasoning included (``output``). An unset price falls back: cached_input, cache_write and
audio_input to input, cache_write_1h to cache_write, audio_output to output. A long-context
tier (``Tier``) replaces every token price of the WHOLE call whose prompt is above its
threshold. Server-side tool requests a provider bills per request (Anthropic's web search)
are priced per 1,000 requests (``web_search``), the same in every tier. The sum is exact and
rounded up once (``gateway.money``).

Quotes (what a call may cost at most, which admission reserves) are ``gateway.quotes``.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.money import ceil_div

PER = 1_000_000
# Tool request prices are per 1,000 requests: one request is PER // REQUESTS_PER of a price
# unit in the sum that is rounded once.
REQUESTS_PER = 1_000


@dataclass(frozen=True, slots=True)
class Price:
    """Unit prices of one model in nano-USD per 1M tokens (None: falls back, see the module),
    and ``web_search`` in nano-USD per 1,000 web search requests (None: not priced, the model
    is never sent a request that may search).

    ``tiers`` are in ascending ``above_input_tokens`` order (the catalog checks it).
    """

    input: int
    output: int = 0
    cached_input: int | None = None
    cache_write: int | None = None
    cache_write_1h: int | None = None
    audio_input: int | None = None
    audio_output: int | None = None
    tiers: tuple[Tier, ...] = ()
    web_search: int | None = None

    def at(self, prompt_tokens: int) -> Price:
        """The prices of a call with ``prompt_tokens`` prompt tokens: those of the highest
        tier whose threshold the prompt is above, else these."""
        chosen = self
        for tier in self.tiers:
            if prompt_tokens > tier.above_input_tokens:
                chosen = tier.price
        return chosen

    @property
    def cached_rate(self) -> int:
        return self.input if self.cached_input is None else self.cached_input

    @property
    def cache_write_rate(self) -> int:
        return self.input if self.cache_write is None else self.cache_write

    @property
    def cache_write_1h_rate(self) -> int:
        return self.cache_write_rate if self.cache_write_1h is None else self.cache_write_1h

    @property
    def audio_input_rate(self) -> int:
        return self.input if self.audio_input is None else self.audio_input

    @property
    def audio_output_rate(self) -> int:
        return self.output if self.audio_output is None else self.audio_output


@dataclass(frozen=True, slots=True)
class Tier:
    """Long-context pricing: ``price`` applies to a whole call whose prompt is above
    ``above_input_tokens`` tokens (e.g. Gemini 2.5 Pro and Claude's 1M context above 200k)."""

    above_input_tokens: int
    price: Price


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one call, every count known (an unknown one was counted first).

    ``cached_tokens``, ``cache_write_tokens`` (of which ``cache_write_1h_tokens``) and
    ``prompt_audio_tokens`` are parts of ``prompt_tokens``; ``reasoning_tokens`` and
    ``output_audio_tokens`` are parts of ``completion_tokens`` (the output billed).
    ``web_search_requests`` counts requests, not tokens."""

    prompt_tokens: int
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0
    prompt_audio_tokens: int = 0
    output_audio_tokens: int = 0
    web_search_requests: int = 0


def cost(price: Price, usage: Usage) -> int:
    """Exact cost, rounded up once to a whole nano-dollar (see gateway.money).

    Parts reported larger than what holds them are clipped (a subset never exceeds its
    parent); the prompt is shared out in the order cached, cache writes, audio, plain text.
    """
    p = price.at(usage.prompt_tokens)
    prompt = max(usage.prompt_tokens, 0)
    cached = _part(usage.cached_tokens, prompt)
    writes = _part(usage.cache_write_tokens, prompt - cached)
    writes_1h = _part(usage.cache_write_1h_tokens, writes)
    audio_in = _part(usage.prompt_audio_tokens, prompt - cached - writes)
    plain_in = prompt - cached - writes - audio_in
    output = max(usage.completion_tokens, 0)
    audio_out = _part(usage.output_audio_tokens, output)
    total = (
        plain_in * p.input
        + cached * p.cached_rate
        + (writes - writes_1h) * p.cache_write_rate
        + writes_1h * p.cache_write_1h_rate
        + audio_in * p.audio_input_rate
        + (output - audio_out) * p.output
        + audio_out * p.audio_output_rate
        + _requests(price, usage.web_search_requests)
    )
    return ceil_div(total, PER)


def _requests(price: Price, web_searches: int) -> int:
    """Tool requests in the units of ``cost``'s sum (nano-USD x 1M), from the base price: a
    request costs the same whatever the prompt's tier."""
    return max(web_searches, 0) * (price.web_search or 0) * (PER // REQUESTS_PER)


def _part(value: int, limit: int) -> int:
    return min(max(value, 0), max(limit, 0))


def worst_case(
    price: Price,
    prompt_tokens: int,
    output_cap: int,
    web_searches: int = 0,
    search_results: int = 0,
) -> int:
    """The reservation: every prompt token at the dearest input-side price and every allowed
    output token at the dearest output-side price, over every tier a prompt of at most
    ``prompt_tokens + search_results`` can reach (a cached price above the input price is
    odd but must not under-reserve), plus every allowed web search request and
    ``search_results`` input tokens of their results at the plain ``input`` price (results
    are read as input, never a cache read or write of the call). Never below ``cost`` of a
    call with at most these counts."""
    reach = prompt_tokens + search_results
    dear_in, dear_out = _dearest(price, reach)
    return ceil_div(
        prompt_tokens * dear_in
        + search_results * _plain_input(price, reach)
        + output_cap * dear_out
        + _requests(price, web_searches),
        PER,
    )


def _plain_input(price: Price, prompt_tokens: int) -> int:
    return max(p.input for p in _reachable(price, prompt_tokens))


def _reachable(price: Price, prompt_tokens: int) -> list[Price]:
    return [price, *(t.price for t in price.tiers if prompt_tokens > t.above_input_tokens)]


def _dearest(price: Price, prompt_tokens: int) -> tuple[int, int]:
    reachable = _reachable(price, prompt_tokens)
    dear_in = max(
        max(p.input, p.cached_rate, p.cache_write_rate, p.cache_write_1h_rate, p.audio_input_rate)
        for p in reachable
    )
    return dear_in, max(max(p.output, p.audio_output_rate) for p in reachable)


def affordable_output(
    price: Price,
    prompt_tokens: int,
    available: int,
    web_searches: int = 0,
    search_results: int = 0,
) -> int:
    """The largest output cap whose worst case (``worst_case`` with the same counts) fits in
    ``available`` (-1: not even the prompt, the web searches and their results)."""
    inputs = (prompt_tokens, web_searches, search_results)

    def bound(output: int) -> int:
        return worst_case(price, inputs[0], output, inputs[1], inputs[2])

    if bound(0) > available:
        return -1
    reach = prompt_tokens + search_results
    dear_in, dear_out = _dearest(price, reach)
    if dear_out <= 0:
        return 1 << 31
    # largest n with ceil((fixed + n*p_out)/PER) <= available
    fixed = (
        prompt_tokens * dear_in
        + search_results * _plain_input(price, reach)
        + _requests(price, web_searches)
    )
    n = (available * PER - fixed) // dear_out
    while n > 0 and bound(n) > available:
        n -= 1
    return max(n, 0)
