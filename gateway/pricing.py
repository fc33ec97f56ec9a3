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

A quote is what a call may cost at most: its prompt bounded for free by the request body's
length, or counted with tiktoken on demand, plus what inputs the body does not carry may count
for (``gateway.inputs``), plus every output token the request allows, in every choice, plus
every billed tool request the request allows (``gateway.server_tools``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Protocol

from gateway import tokens
from gateway.endpoints import Endpoint
from gateway.errors import BadRequest
from gateway.inputs import NOTHING_HELD, Held, ImageRule, held_input
from gateway.money import ceil_div
from gateway.server_tools import requested_uses, results_window

PER = 1_000_000
# Tool request prices are per 1,000 requests: one request is PER // REQUESTS_PER of a price
# unit in the sum that is rounded once.
REQUESTS_PER = 1_000
# Several answers to one prompt each produce up to the output cap: n on chat and completions,
# best_of (generated upstream, billed, not all returned) on completions.
CHOICE_FIELDS = ("n", "best_of")
# OpenAI's own limit on n; far above any real use, it keeps a reservation from overflowing
# into nonsense and a typo from reserving a whole balance.
MAX_CHOICES = 128


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

    @property
    def context_window(self) -> int | None: ...

    @property
    def image_tokens(self) -> ImageRule | None: ...


@dataclass(frozen=True, slots=True)
class Output:
    """What a request may produce: up to ``per_choice`` tokens in each of ``choices`` answers.

    ``field`` is the request field the cap travels upstream in: the caller's when ``asked``
    (they set one the endpoint honours), else the endpoint's own (the gateway writes it)."""

    per_choice: int
    choices: int = 1
    field: str = ""
    asked: bool = False

    @property
    def tokens(self) -> int:
        return self.per_choice * self.choices


@dataclass(frozen=True, slots=True)
class Quote:
    """The most one call may cost: ``reserve`` nano-USD for ``input_tokens`` at the dearer
    input price plus ``output.tokens`` output tokens.

    ``prompt_tokens`` is the prompt written in the body: the tiktoken count when ``exact``,
    else the free upper bound from the body's length. ``input_tokens`` adds what ``held``
    reserves for inputs the body does not bound, never above the model's context window."""

    reserve: int
    prompt_tokens: int
    input_tokens: int
    output: Output
    held: Held = NOTHING_HELD
    exact: bool = False
    # A stream whose hold grows as it produces (gateway.proxy.stream_hold): the output tokens,
    # all choices together, that ``reserve`` covers so far; None when it covers ``cap``.
    output_held: int | None = None
    # The web search requests the call may make (gateway.server_tools), all reserved, and the
    # input tokens reserved for their results (inside ``input_tokens``, at the input price).
    web_searches: int = 0
    search_results: int = 0

    def bound(self, price: Price, output_tokens: int) -> int:
        """``worst_case`` of this call's inputs with ``output_tokens`` of output."""
        body = self.input_tokens - self.search_results
        return worst_case(price, body, output_tokens, self.web_searches, self.search_results)

    def affordable(self, price: Price, available: int) -> int:
        """``affordable_output`` for this call's inputs."""
        body = self.input_tokens - self.search_results
        return affordable_output(price, body, available, self.web_searches, self.search_results)

    @property
    def cap(self) -> int:
        """Every output token the call may be billed for, all choices together."""
        return self.output.tokens


def quote(model: Rated, endpoint: Endpoint, payload: dict[str, Any], body_len: int) -> Quote:
    """The free quote of a request whose body is ``body_len`` bytes: no tokenizing.

    Raises BadRequest for an invalid output cap or choice count, an input no configured rule
    bounds (``gateway.inputs``), or a billed tool the model is not priced for or whose use
    count is invalid (``gateway.server_tools``)."""
    output = output_cap(endpoint, payload, model.max_output_tokens)
    window = model.context_window
    held = held_input(endpoint, payload, window=window, images=model.image_tokens)
    searches = requested_uses(endpoint, payload, priced=model.price.web_search is not None)
    if searches:
        results_window(window)
    bound = tokens.prompt_bound(endpoint, payload, body_len)
    return _priced(model, bound, output, held, exact=False, web_searches=searches)


def exact_quote(free: Quote, model: Rated, endpoint: Endpoint, payload: dict[str, Any]) -> Quote:
    """``free`` with the prompt counted by tiktoken; its reserve is never above the free one."""
    encoder = tokens.model_encoder(model.upstream_model, model.encoding)
    prompt = tokens.count_prompt(encoder, endpoint, payload)
    exact = _priced(
        model, prompt, free.output, free.held, exact=True, web_searches=free.web_searches
    )
    return replace(exact, reserve=min(exact.reserve, free.reserve))


def fit(reserved: Quote, price: Price, available: int) -> Quote | None:
    """``reserved`` with the largest per-choice output cap whose worst case fits ``available``
    (None when not even one token per choice fits, or the call produces no output)."""
    output = reserved.output
    if output.tokens == 0:
        return None
    most = reserved.affordable(price, available) // output.choices
    if most < 1:
        return None
    fitted = replace(output, per_choice=min(most, output.per_choice))
    reserve = reserved.bound(price, fitted.tokens)
    return replace(reserved, reserve=reserve, output=fitted)


def first_slice(reserved: Quote, price: Price, available: int, tokens: int) -> Quote | None:
    """``reserved`` as a stream that may grow its hold: its cap lowered to what ``available``
    covers (as ``fit``), and a reserve for at most ``tokens`` output tokens of it (None when
    not even one token per choice fits, or the call produces no output)."""
    fitted = fit(reserved, price, available)
    if fitted is None:
        return None
    held = min(tokens, fitted.cap)
    reserve = fitted.bound(price, held)
    return replace(fitted, reserve=reserve, output_held=held)


def _priced(
    model: Rated, prompt: int, output: Output, held: Held, *, exact: bool, web_searches: int
) -> Quote:
    total = prompt + held.tokens
    window = model.context_window
    # A provider refuses or truncates an input longer than the context window.
    inputs = total if window is None else min(total, window)
    # Search results fill what the window leaves (quote() checked a search has one).
    results = (window or 0) - inputs if web_searches else 0
    reserve = worst_case(model.price, inputs, output.tokens, web_searches, results)
    return Quote(
        reserve,
        prompt,
        inputs + results,
        output,
        held,
        exact,
        web_searches=web_searches,
        search_results=results,
    )


def output_cap(endpoint: Endpoint, payload: dict[str, Any], most: int) -> Output:
    """The most output the request may be billed for: per choice, the first cap field the
    endpoint honours (at most the model's ``most``), times ``n``/``best_of``; nothing for an
    endpoint that produces no output. Every honoured cap field present must be valid, since
    the upstream may read any of them."""
    if not endpoint.cap_fields:
        return Output(0)
    per_choice, field, asked = most, endpoint.cap_fields[0], False
    if endpoint.cap_required and payload.get(field) is None:
        # Anthropic's Messages API refuses a request without max_tokens; so does the gateway,
        # before reserving anything (the cap bounds the reservation).
        raise BadRequest(f"{field}: Field required", param=field, code="missing_required_field")
    for name in endpoint.cap_fields:
        value = payload.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise BadRequest(f"{name} must be a positive integer", param=name, code="invalid_value")
        if not asked:
            per_choice, field, asked = min(value, most), name, True
    choices = 1
    # Counted on every generating endpoint, whether it documents the field or not: an upstream
    # that honours one the gateway ignored would produce more than was reserved.
    for name in CHOICE_FIELDS:
        value = payload.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_CHOICES:
            raise BadRequest(
                f"{name} must be an integer between 1 and {MAX_CHOICES}",
                param=name,
                code="invalid_value",
            )
        choices = max(choices, value)
    return Output(per_choice, choices, field, asked)
