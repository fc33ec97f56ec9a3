"""Token counts and unit prices -> cost in nano-USD (pure), and the quote admission reserves.

Prices are nano-USD per 1M tokens. Cached prompt tokens are a subset of prompt tokens and are
charged at the cached price (the input price when no cached price is set); reasoning tokens are
a subset of completion tokens and are charged as output.

A quote is what a call may cost at most: its prompt bounded for free by the request body's
length, or counted with tiktoken on demand, plus what inputs the body does not carry may count
for (``gateway.inputs``), plus every output token the request allows, in every choice.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Protocol

from gateway import tokens
from gateway.endpoints import Endpoint
from gateway.errors import BadRequest
from gateway.inputs import NOTHING_HELD, Held, ImageRule, held_input
from gateway.money import ceil_div

PER = 1_000_000
# Several answers to one prompt each produce up to the output cap: n on chat and completions,
# best_of (generated upstream, billed, not all returned) on completions.
CHOICE_FIELDS = ("n", "best_of")
# OpenAI's own limit on n; far above any real use, it keeps a reservation from overflowing
# into nonsense and a typo from reserving a whole balance.
MAX_CHOICES = 128


@dataclass(frozen=True, slots=True)
class Price:
    input: int
    output: int = 0
    cached_input: int | None = None


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

    @property
    def cap(self) -> int:
        """Every output token the call may be billed for, all choices together."""
        return self.output.tokens


def quote(model: Rated, endpoint: Endpoint, payload: dict[str, Any], body_len: int) -> Quote:
    """The free quote of a request whose body is ``body_len`` bytes: no tokenizing.

    Raises BadRequest for an invalid output cap or choice count, or an input no configured
    rule bounds (``gateway.inputs``)."""
    output = output_cap(endpoint, payload, model.max_output_tokens)
    held = held_input(endpoint, payload, window=model.context_window, images=model.image_tokens)
    bound = tokens.prompt_bound(endpoint, payload, body_len)
    return _priced(model, bound, output, held, exact=False)


def exact_quote(free: Quote, model: Rated, endpoint: Endpoint, payload: dict[str, Any]) -> Quote:
    """``free`` with the prompt counted by tiktoken; its reserve is never above the free one."""
    encoder = tokens.model_encoder(model.upstream_model, model.encoding)
    prompt = tokens.count_prompt(encoder, endpoint, payload)
    exact = _priced(model, prompt, free.output, free.held, exact=True)
    return replace(exact, reserve=min(exact.reserve, free.reserve))


def fit(reserved: Quote, price: Price, available: int) -> Quote | None:
    """``reserved`` with the largest per-choice output cap whose worst case fits ``available``
    (None when not even one token per choice fits, or the call produces no output)."""
    output = reserved.output
    if output.tokens == 0:
        return None
    most = affordable_output(price, reserved.input_tokens, available) // output.choices
    if most < 1:
        return None
    fitted = replace(output, per_choice=min(most, output.per_choice))
    reserve = worst_case(price, reserved.input_tokens, fitted.tokens)
    return replace(reserved, reserve=reserve, output=fitted)


def _priced(model: Rated, prompt: int, output: Output, held: Held, *, exact: bool) -> Quote:
    total = prompt + held.tokens
    window = model.context_window
    # A provider refuses or truncates an input longer than the context window.
    inputs = total if window is None else min(total, window)
    reserve = worst_case(model.price, inputs, output.tokens)
    return Quote(reserve, prompt, inputs, output, held, exact)


def output_cap(endpoint: Endpoint, payload: dict[str, Any], most: int) -> Output:
    """The most output the request may be billed for: per choice, the first cap field the
    endpoint honours (at most the model's ``most``), times ``n``/``best_of``; nothing for an
    endpoint that produces no output. Every honoured cap field present must be valid, since
    the upstream may read any of them."""
    if not endpoint.cap_fields:
        return Output(0)
    per_choice, field, asked = most, endpoint.cap_fields[0], False
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
