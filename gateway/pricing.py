"""Token counts and unit prices -> cost in nano-USD (pure), and the quote admission reserves.

Prices are nano-USD per 1M tokens, one per token class (``Price``). The prompt splits into
disjoint classes, each charged at its own price: cached reads (``cached_input``), cache writes
at the short TTL (``cache_write``), cache writes at the 1-hour TTL (``cache_write_1h``), audio
(``audio_input``) and the rest (``input``); the output into audio (``audio_output``) and the
rest, reasoning included (``output``). An unset price falls back: cached_input, cache_write and
audio_input to input, cache_write_1h to cache_write, audio_output to output. A long-context
tier (``Tier``) replaces every price of the WHOLE call whose prompt is above its threshold.
The sum is exact and rounded up once (``gateway.money``).

A quote is what a call may cost at most: its prompt bounded for free by the request body's
length, or counted with tiktoken on demand, plus every output token the request allows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from gateway import tokens
from gateway.endpoints import Endpoint
from gateway.errors import BadRequest
from gateway.money import ceil_div

PER = 1_000_000
# Several answers to one prompt each produce up to the output cap.
CHOICE_FIELDS = ("n", "best_of")


@dataclass(frozen=True, slots=True)
class Price:
    """Unit prices of one model in nano-USD per 1M tokens (None: falls back, see the module).

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
    ``output_audio_tokens`` are parts of ``completion_tokens`` (the output billed)."""

    prompt_tokens: int
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0
    prompt_audio_tokens: int = 0
    output_audio_tokens: int = 0


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
    )
    return ceil_div(total, PER)


def _part(value: int, limit: int) -> int:
    return min(max(value, 0), max(limit, 0))


def worst_case(price: Price, prompt_tokens: int, output_cap: int) -> int:
    """The reservation: every prompt token at the dearest input-side price and every allowed
    output token at the dearest output-side price, over every tier a prompt of at most
    ``prompt_tokens`` can reach (a cached price above the input price is odd but must not
    under-reserve). Never below ``cost`` of a call with at most these counts."""
    dear_in, dear_out = _dearest(price, prompt_tokens)
    return ceil_div(prompt_tokens * dear_in + output_cap * dear_out, PER)


def _dearest(price: Price, prompt_tokens: int) -> tuple[int, int]:
    reachable = [price, *(t.price for t in price.tiers if prompt_tokens > t.above_input_tokens)]
    dear_in = max(
        max(p.input, p.cached_rate, p.cache_write_rate, p.cache_write_1h_rate, p.audio_input_rate)
        for p in reachable
    )
    return dear_in, max(max(p.output, p.audio_output_rate) for p in reachable)


def affordable_output(price: Price, prompt_tokens: int, available: int) -> int:
    """The largest output cap whose worst case fits in ``available`` (-1: not even the prompt)."""
    if worst_case(price, prompt_tokens, 0) > available:
        return -1
    dear_in, dear_out = _dearest(price, prompt_tokens)
    if dear_out <= 0:
        return 1 << 31
    # largest n with ceil((p_in*prompt + n*p_out)/PER) <= available
    n = (available * PER - prompt_tokens * dear_in) // dear_out
    while n > 0 and worst_case(price, prompt_tokens, n) > available:
        n -= 1
    return max(n, 0)


# -- quotes ------------------------------------------------------------------------------


class Rated(Protocol):
    """What a quote reads of a model (``gateway.catalog.Model`` is one)."""

    @property
    def price(self) -> Price: ...

    @property
    def max_output_tokens(self) -> int: ...

    @property
    def upstream_model(self) -> str: ...

    @property
    def encoding(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Quote:
    """The most one call may cost: ``reserve`` nano-USD for ``prompt_tokens`` prompt tokens at
    the dearer input price plus ``cap`` output tokens. ``prompt_tokens`` is the tiktoken count
    when ``exact``, else the free upper bound from the body's length."""

    reserve: int
    prompt_tokens: int
    cap: int
    exact: bool = False


def quote(model: Rated, endpoint: Endpoint, payload: dict[str, Any], body_len: int) -> Quote:
    """The free quote of a request whose body is ``body_len`` bytes: no tokenizing.

    Raises BadRequest for an invalid output cap or choice count."""
    cap = output_cap(endpoint, payload, model.max_output_tokens)
    bound = tokens.prompt_bound(endpoint, payload, body_len)
    return Quote(worst_case(model.price, bound, cap), bound, cap)


def exact_quote(free: Quote, model: Rated, endpoint: Endpoint, payload: dict[str, Any]) -> Quote:
    """``free`` with the prompt counted by tiktoken; its reserve is never above the free one."""
    encoder = tokens.model_encoder(model.upstream_model, model.encoding)
    prompt = tokens.count_prompt(encoder, endpoint, payload)
    reserve = min(worst_case(model.price, prompt, free.cap), free.reserve)
    return Quote(reserve, prompt, free.cap, exact=True)


def output_cap(endpoint: Endpoint, payload: dict[str, Any], most: int) -> int:
    """The most output tokens the request may be billed for: its first cap field (at most the
    model's ``most``) times ``n``/``best_of``; 0 for an endpoint that produces no output."""
    if not endpoint.cap_fields:
        return 0
    cap = most
    for name in endpoint.cap_fields:
        value = payload.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise BadRequest(f"{name} must be a positive integer", param=name, code="invalid_value")
        cap = min(value, cap)
        break
    choices = 1
    for name in CHOICE_FIELDS:
        value = payload.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 128:
            raise BadRequest(
                f"{name} must be an integer between 1 and 128", param=name, code="invalid_value"
            )
        choices = max(choices, value)
    return cap * choices
