"""Quotes: the free byte bound, the output cap and choices, the exact count admission falls
back to, the cap that fits; the cap written into the forwarded request."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.catalog import Model, Provider
from gateway.endpoints import ENDPOINTS, OUTPUT_CAP_FIELDS, Endpoint
from gateway.errors import BadRequest
from gateway.pricing import Price, affordable_output, worst_case
from gateway.proxy.admission import insufficient_message, write_cap
from gateway.quotes import Output, exact_quote, fit, output_cap, quote
from gateway.tokens import count_prompt, model_encoder

PROVIDER = Provider("p", "http://upstream")
CHAT_MODEL = Model(
    "chat", PROVIDER, "gpt-4", Price(input=2_500_000_000, output=10_000_000_000), "chat", 1000
)
EMBED_MODEL = Model("embed", PROVIDER, "text-embedding-3-small", Price(20_000_000), "embedding", 0)
CHAT = ENDPOINTS["chat/completions"]

texts = st.text(min_size=0, max_size=60)


def payloads() -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
    return st.one_of(
        st.lists(texts, max_size=4).map(
            lambda ts: (
                "chat/completions",
                {"messages": [{"role": "user", "content": t} for t in ts]},
            )
        ),
        st.lists(texts, max_size=4).map(lambda ts: ("completions", {"prompt": ts})),
        texts.map(lambda t: ("completions", {"prompt": t})),
        st.lists(texts, min_size=1, max_size=4).map(lambda ts: ("embeddings", {"input": ts})),
        st.tuples(texts, texts).map(lambda p: ("responses", {"instructions": p[0], "input": p[1]})),
    )


@settings(max_examples=60, deadline=None)
@given(payloads())
def test_the_free_quote_never_reserves_less_than_the_exact_one(
    case: tuple[str, dict[str, Any]],
) -> None:
    path, payload = case
    endpoint = ENDPOINTS[path]
    model = EMBED_MODEL if endpoint.model_kind == "embedding" else CHAT_MODEL
    free = quote(model, endpoint, payload, len(orjson.dumps(payload)))
    exact = exact_quote(free, model, endpoint, payload)
    assert not free.exact
    assert exact.exact
    assert exact.prompt_tokens <= free.prompt_tokens
    assert exact.reserve == worst_case(model.price, exact.prompt_tokens, free.cap) <= free.reserve
    assert exact.cap == free.cap


def test_the_first_honoured_cap_field_wins_capped_at_the_model_times_the_choices() -> None:
    assert output_cap(CHAT, {}, 1000) == Output(1000, field="max_completion_tokens")
    assert output_cap(CHAT, {"max_tokens": 50}, 1000) == Output(50, field="max_tokens", asked=True)
    both = {"max_completion_tokens": 20, "max_tokens": 50}
    assert output_cap(CHAT, both, 1000) == Output(20, field="max_completion_tokens", asked=True)
    above = output_cap(CHAT, {"max_tokens": 5000}, 1000)
    assert above == Output(1000, field="max_tokens", asked=True)
    assert output_cap(CHAT, {"max_tokens": 50, "n": 3}, 1000).tokens == 150
    assert output_cap(CHAT, {"max_tokens": 50, "n": 2, "best_of": 4}, 1000).tokens == 200


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("chat/completions", "max_completion_tokens"),
        ("completions", "max_tokens"),
        ("responses", "max_output_tokens"),
    ],
)
def test_an_uncapped_request_is_capped_under_the_endpoints_own_field(path: str, field: str) -> None:
    assert output_cap(ENDPOINTS[path], {}, 700) == Output(700, field=field)


def test_a_cap_under_another_endpoints_name_is_not_trusted() -> None:
    # An upstream may ignore a field its endpoint does not define: the cap stays the model's.
    assert output_cap(CHAT, {"max_output_tokens": 5}, 1000) == Output(
        1000, field="max_completion_tokens"
    )
    assert output_cap(ENDPOINTS["completions"], {"max_completion_tokens": 5}, 1000).per_choice == (
        1000
    )


def test_best_of_multiplies_completions_output() -> None:
    completions = ENDPOINTS["completions"]
    assert output_cap(completions, {"max_tokens": 10, "n": 2, "best_of": 5}, 1000).tokens == 50


@pytest.mark.parametrize(
    "payload",
    [
        {"max_tokens": 0},
        {"max_tokens": True},
        {"max_tokens": "9"},
        {"max_tokens": 9.0},
        {"n": 0},
        {"n": "3"},
        {"n": 2.5},
        {"best_of": 129},
        {"n": False},
    ],
)
def test_an_invalid_cap_or_choice_count_is_refused(payload: dict[str, Any]) -> None:
    # In OpenAI's shape: 400 invalid_request_error naming the field (GatewayError.body).
    with pytest.raises(BadRequest) as refused:
        quote(CHAT_MODEL, CHAT, payload, 100)
    assert refused.value.code == "invalid_value"
    assert refused.value.param == next(iter(payload))
    assert refused.value.status == 400


def test_every_honoured_cap_field_must_be_valid_not_only_the_first() -> None:
    with pytest.raises(BadRequest) as refused:
        quote(CHAT_MODEL, CHAT, {"max_completion_tokens": 20, "max_tokens": "lots"}, 100)
    assert refused.value.param == "max_tokens"


def test_an_endpoint_without_output_is_quoted_its_prompt_only() -> None:
    payload = {"input": ["one two", "three"], "max_tokens": 500, "n": 4}
    free = quote(EMBED_MODEL, ENDPOINTS["embeddings"], payload, 60)
    assert free.cap == 0
    assert free.reserve == worst_case(EMBED_MODEL.price, free.prompt_tokens, 0)


# -- the reservation bounds what the forwarded call can cost --------------------------------

CAP_VALUES = st.one_of(st.none(), st.integers(min_value=1, max_value=5000))


@st.composite
def generating_calls(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    path = draw(st.sampled_from(["chat/completions", "completions", "responses"]))
    text = draw(texts)
    prompt: dict[str, Any] = {
        "chat/completions": {"messages": [{"role": "user", "content": text}]},
        "completions": {"prompt": text},
        "responses": {"input": text},
    }[path]
    payload = dict(prompt)
    for name in ("max_completion_tokens", "max_tokens", "max_output_tokens", "n", "best_of"):
        value = draw(CAP_VALUES if name.startswith("max") else st.none() | st.integers(1, 128))
        if value is not None:
            payload[name] = value
    return path, payload


def forwarded_worst_case(model: Model, endpoint: Endpoint, sent: dict[str, Any]) -> int:
    """What the upstream may bill for the request it received: the prompt as counted, and
    the largest cap it could read under any name (or the model's own limit if it reads none)
    in every choice it may generate."""
    prompt = count_prompt(model_encoder(model.upstream_model, None), endpoint, sent)
    caps = [sent[f] for f in OUTPUT_CAP_FIELDS if isinstance(sent.get(f), int)]
    cap = max(caps) if caps else model.max_output_tokens
    choices = max(sent.get("n", 1), sent.get("best_of", 1))
    return worst_case(model.price, prompt, cap * choices)


@settings(max_examples=150, deadline=None)
@given(generating_calls(), st.integers(min_value=0, max_value=10**8))
def test_the_reservation_never_falls_below_what_the_forwarded_call_can_cost(
    case: tuple[str, dict[str, Any]], available: int
) -> None:
    path, payload = case
    endpoint = ENDPOINTS[path]
    free = quote(CHAT_MODEL, endpoint, payload, len(orjson.dumps(payload)))
    exact = exact_quote(free, CHAT_MODEL, endpoint, payload)
    fitted = fit(exact, CHAT_MODEL.price, available)
    for reserved in (free, exact, fitted):
        if reserved is None:
            continue
        sent = dict(payload)
        write_cap(endpoint, sent, reserved.output)
        assert reserved.reserve >= forwarded_worst_case(CHAT_MODEL, endpoint, sent)
        assert reserved.output.per_choice <= CHAT_MODEL.max_output_tokens
    if fitted is not None:
        assert fitted.reserve <= available
        assert fitted.output.choices == exact.output.choices


@pytest.mark.parametrize(
    ("path", "payload", "forwarded"),
    [
        ("chat/completions", {}, {"max_completion_tokens": 1000}),
        ("chat/completions", {"max_tokens": 50_000}, {"max_tokens": 1000}),
        ("chat/completions", {"max_tokens": 20}, {"max_tokens": 20}),
        (
            "chat/completions",
            {"max_completion_tokens": 20, "max_tokens": 50_000},
            {"max_completion_tokens": 20, "max_tokens": 20},
        ),
        (
            "chat/completions",
            {"max_output_tokens": 50_000},
            {"max_output_tokens": 1000, "max_completion_tokens": 1000},
        ),
        (
            "chat/completions",
            {"max_output_tokens": "lots"},
            {"max_output_tokens": 1000, "max_completion_tokens": 1000},
        ),
        ("completions", {"max_tokens": None}, {"max_tokens": 1000}),
        ("responses", {}, {"max_output_tokens": 1000}),
        ("embeddings", {}, {}),
    ],
)
def test_the_forwarded_request_carries_the_reserved_cap(
    path: str, payload: dict[str, Any], forwarded: dict[str, Any]
) -> None:
    endpoint = ENDPOINTS[path]
    sent = dict(payload)
    write_cap(endpoint, sent, output_cap(endpoint, payload, 1000))
    assert {k: v for k, v in sent.items() if k in OUTPUT_CAP_FIELDS} == forwarded


def test_n_shares_what_fits_between_the_choices() -> None:
    # BH-22 (a): $0.002, n=3 and max_tokens=100 on a $1 / $10 per 1M model with a 9-token
    # prompt: 199 output tokens fit, so each choice may have 66.
    model = Model("m", PROVIDER, "up-model", Price(10**9, 10**10, 10**8), "chat", 1000)
    payload = {"messages": [{"role": "user", "content": "a"}], "n": 3, "max_tokens": 100}
    free = quote(model, CHAT, payload, len(orjson.dumps(payload)))
    exact = exact_quote(free, model, CHAT, payload)
    assert exact.output == Output(100, choices=3, field="max_tokens", asked=True)
    assert affordable_output(model.price, exact.input_tokens, 2_000_000) == 199
    message = insufficient_message(model, exact, 2_000_000)
    assert "Set max_tokens to 66 or less" in message


def test_fit_gives_the_largest_cap_per_choice_the_balance_covers() -> None:
    payload = {"messages": [{"role": "user", "content": "a"}], "n": 2}
    free = quote(CHAT_MODEL, CHAT, payload, len(orjson.dumps(payload)))
    available = worst_case(CHAT_MODEL.price, free.input_tokens, 2 * 300) + 5
    fitted = fit(free, CHAT_MODEL.price, available)
    assert fitted is not None
    assert fitted.output == Output(300, choices=2, field="max_completion_tokens")
    assert fitted.reserve <= available
    assert fit(free, CHAT_MODEL.price, worst_case(CHAT_MODEL.price, free.input_tokens, 1)) is None


def test_web_searches_cost_their_price_per_1000_requests_in_every_tier():
    from gateway.pricing import Price, Tier, Usage, affordable_output, cost, worst_case

    long = Price(input=6_000_000_000, output=22_500_000_000)
    price = Price(
        input=3_000_000_000,
        output=15_000_000_000,
        web_search=10_000_000_000,
        tiers=(Tier(200_000, long),),
    )
    one_search = 10_000_000  # $0.01
    assert cost(price, Usage(prompt_tokens=0, web_search_requests=3)) == 3 * one_search
    # The long-context tier reprices the tokens, not the searches.
    assert cost(price, Usage(prompt_tokens=300_000, web_search_requests=1)) == (
        300_000 * 6_000 + one_search
    )
    assert worst_case(price, 1_000, 100, 5) == worst_case(price, 1_000, 100) + 5 * one_search
    # A price per 1,000 that is not a whole nano-USD per search is summed exactly and rounded
    # up once: 1 nano-USD per 1,000 searches, 7 searches, 1 nano-USD; with 10 tokens, still 1.
    odd = Price(input=1, web_search=1)
    assert cost(odd, Usage(prompt_tokens=0, web_search_requests=7)) == 1
    assert cost(odd, Usage(prompt_tokens=10, web_search_requests=7)) == 1
    # What fits once the searches are reserved.
    available = worst_case(price, 1_000, 100, 5)
    assert affordable_output(price, 1_000, available, 5) == 100
    assert affordable_output(price, 1_000, 5 * one_search, 5) == -1


def test_search_results_are_reserved_at_the_input_price_of_the_tier_they_reach():
    from gateway.pricing import Price, Tier, affordable_output, worst_case

    long = Price(input=6_000_000_000, output=22_500_000_000, cache_write_1h=12_000_000_000)
    price = Price(
        input=3_000_000_000,
        output=15_000_000_000,
        cache_write_1h=6_000_000_000,
        web_search=10_000_000_000,
        tiers=(Tier(200_000, long),),
    )
    # 1,000 body tokens at the dearest ($6, a 1-hour write), 100k of results at $3.
    assert worst_case(price, 1_000, 0, 1, 100_000) == 1_000 * 6_000 + 100_000 * 3_000 + 10**7
    # Past the threshold the tier's prices apply: body at $12, results at $6, output $22.50.
    assert worst_case(price, 1_000, 10, 0, 300_000) == (
        1_000 * 12_000 + 300_000 * 6_000 + 10 * 22_500
    )
    available = worst_case(price, 1_000, 50, 2, 100_000)
    assert affordable_output(price, 1_000, available, 2, 100_000) == 50
