"""Admission: the reservation a call is forwarded on, and what the upstream is told.

A call is reserved at its free quote (prompt bounded by the body's length); when that does not
fit, at its exactly counted quote; when that does not fit either and the caller set no output
cap, at the largest cap the balance covers (``GATEWAY_UNCAPPED_CALLS=fit``), a stream only for
a first slice of that cap (its hold grows as it produces: ``gateway.proxy.stream_hold``). The
cap is then written into the request, so the upstream can never produce more than the balance
covered. Otherwise 402 with what would fit.

The key's and user's quotas (``gateway.proxy.governance``) are checked in the same atomic
admission, counting the tokens the quote reserves (prompt + output cap). A budget or tpm
refusal of the free quote tries the exact one too (the free bound overcounts the prompt);
an rpm or concurrency refusal is final at once.
"""

from __future__ import annotations

from typing import Any

from gateway.catalog import Model
from gateway.endpoints import OUTPUT_CAP_FIELDS, Endpoint, ServerTool
from gateway.errors import InsufficientCredit
from gateway.metering.quota import Quota
from gateway.metering.store import Admission, BalanceStore
from gateway.money import format_usd
from gateway.proxy.governance import refusal_error
from gateway.quotes import Output, Quote, exact_quote, first_slice, fit


async def reserve(
    store: BalanceStore,
    ttl: float,
    quote: Quote,
    *,
    user_id: str,
    request_id: str,
    model: Model,
    endpoint: Endpoint,
    payload: dict[str, Any],
    may_fit: bool,
    stream_slice: int | None = None,
    quotas: tuple[Quota, ...] = (),
) -> tuple[Quote, Admission]:
    """Reserves ``quote``, else the same call with its prompt counted exactly, else (when
    ``may_fit`` and the caller set no cap) with the largest output cap that fits the balance
    and any budget that refused it. A stream (``stream_slice`` set) is then reserved for at
    most ``stream_slice`` output tokens of that cap, and grows its hold as it produces
    (``gateway.proxy.stream_hold``). Returns the quote reserved and its admission (the
    quotas' counters). Raises InsufficientCredit (402) when none fits, KeyBudgetExceeded or
    RateLimited when a quota refuses."""

    async def admit(q: Quote) -> Admission:
        if not quotas:
            return await store.admit(user_id, request_id, q.reserve, ttl=ttl)
        tokens = q.input_tokens + (q.output_held if q.output_held is not None else q.cap)
        admission = await store.admit(
            user_id, request_id, q.reserve, ttl=ttl, quotas=quotas, tokens=tokens
        )
        if admission.refused is not None and admission.refused.limit in ("rpm", "max_concurrent"):
            raise refusal_error(admission.refused, quotas)
        return admission

    admission = await admit(quote)
    if admission.ok:
        return quote, admission
    exact = exact_quote(quote, model, endpoint, payload)
    if exact.reserve < quote.reserve:
        admission = await admit(exact)
        if admission.ok:
            return exact, admission
    refused = admission.refused
    may_fit = may_fit and not exact.output.asked  # a cap the caller set is never lowered
    if refused is not None and not (refused.limit == "budget" and may_fit):
        raise refusal_error(refused, quotas)
    # What a fitted call may reserve: the balance's room, or a budget's when that refused
    # (then the balance's too, if it refuses the call fitted to the budget).
    room = admission.available
    if refused is not None:
        room = await _budget_room(store, user_id, quotas, refused.scope)
    for _ in range(2):
        fitted = None
        if may_fit:
            fitted = (
                fit(exact, model.price, room)
                if stream_slice is None
                else first_slice(exact, model.price, room, stream_slice)
            )
        if fitted is None:
            break
        admission = await admit(fitted)
        if admission.ok:
            return fitted, admission
        if admission.refused is not None:
            raise refusal_error(admission.refused, quotas)
        refused = None  # the balance, not the budget, is what refuses now
        if admission.available >= room:
            break
        room = admission.available
    if refused is not None:
        raise refusal_error(refused, quotas)
    raise InsufficientCredit(
        insufficient_message(model, exact, admission.available, endpoint.web_search)
    )


def write_cap(endpoint: Endpoint, payload: dict[str, Any], output: Output) -> None:
    """Makes the forwarded request carry the output cap that was reserved (README, "How money
    works"): the caller's field when they set one (lowered to the reserved cap), else the
    endpoint's own; a cap under another endpoint's name is lowered too, in case the upstream
    reads it. Edits ``payload`` in place: it is encoded once, when forwarded."""
    if not endpoint.cap_fields:
        return
    cap = output.per_choice
    for name in OUTPUT_CAP_FIELDS:
        value = payload.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value > cap:
            payload[name] = cap
    if not output.asked:
        payload[output.field] = cap


def insufficient_message(
    model: Model, quote: Quote, available: int, search: ServerTool | None = None
) -> str:
    """The 402 text: what the call may cost against what is available, and what would fit
    (``search``: the endpoint's search tool, whose bound it suggests lowering)."""
    output = quote.output
    left = (
        f"${format_usd(available)} is available"
        if available >= 0
        else f"the balance is ${format_usd(-available)} short of what is already owed or held"
    )
    head = (
        f"Insufficient credit: this call to {model.name} may cost up to "
        f"${format_usd(quote.reserve)} ({_tokens(quote.input_tokens, 'prompt')} + up to "
        f"{_tokens(quote.cap, 'output')}) but {left}."
    )
    if quote.held.tokens:
        head += (
            f" The prompt includes {quote.held.why}, which the request body does not carry, "
            f"reserved at {quote.held.tokens} tokens."
        )
    if quote.web_searches:
        head += (
            f" It may make up to {quote.web_searches} web search"
            f"{'' if quote.web_searches == 1 else 'es'}, reserved at its price, and their "
            f"results are reserved at {quote.search_results} input tokens."
        )
    most = quote.affordable(model.price, available)
    if available <= 0:
        return head + " Top up your balance."
    if most < 0 and quote.web_searches:
        return head + (
            f" Lower {search.bound_hint if search else 'the search bound'}, send the call "
            "without search, or top up your balance."
        )
    if model.kind == "embedding" or most < 0:
        return head + " Shorten the input or top up your balance."
    if most == 0:
        return head + " The prompt alone uses what is left; top up your balance."
    # Each choice may produce the whole cap, so what fits is shared between the choices.
    per_choice = most // output.choices
    if per_choice == 0:
        return head + (
            f" Not even one output token for each of {output.choices} choices fits; ask for "
            "fewer choices or top up your balance."
        )
    shared = f" (each of the {output.choices} choices may use it all)" if output.choices > 1 else ""
    return head + f" Set {output.field} to {per_choice} or less{shared}, or top up your balance."


def _tokens(count: int, kind: str) -> str:
    return f"{count} {kind} token{'' if count == 1 else 's'}"


async def _budget_room(
    store: BalanceStore, user_id: str, quotas: tuple[Quota, ...], scope: str
) -> int:
    """Nano-USD the budget of ``scope`` still leaves: budget - spent - held (at least 0)."""
    q = next(q for q in quotas if q.scope == scope)
    usage = await store.quota_usage(user_id, q)
    return max((q.budget or 0) - usage.spent - usage.reserved, 0)
