"""Quotes: what one call may cost at most, which admission reserves (pure apart from
tokenizing, run by ``exact_quote`` only).

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
from gateway.pricing import Price, affordable_output, worst_case
from gateway.server_tools import requested_uses, results_window

# Several answers to one prompt each produce up to the output cap: n on chat and completions,
# best_of (generated upstream, billed, not all returned) on completions.
CHOICE_FIELDS = ("n", "best_of")
# OpenAI's own limit on n; far above any real use, it keeps a reservation from overflowing
# into nonsense and a typo from reserving a whole balance.
MAX_CHOICES = 128


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
