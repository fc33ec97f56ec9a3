"""Token counts and unit prices -> cost in nano-USD (pure), and the quote admission reserves.

Prices are nano-USD per 1M tokens. Cached prompt tokens are a subset of prompt tokens and are
charged at the cached price (the input price when no cached price is set); reasoning tokens are
a subset of completion tokens and are charged as output.

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
