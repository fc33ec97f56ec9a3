"""Quotes: the free byte bound, the output cap and the exact count admission falls back to."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.catalog import Model, Provider
from gateway.endpoints import ENDPOINTS
from gateway.errors import BadRequest
from gateway.pricing import Price, exact_quote, output_cap, quote, worst_case

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


def test_the_first_cap_field_wins_capped_at_the_model_times_the_choices() -> None:
    assert output_cap(CHAT, {}, 1000) == 1000
    assert output_cap(CHAT, {"max_tokens": 50}, 1000) == 50
    assert output_cap(CHAT, {"max_completion_tokens": 20, "max_tokens": 50}, 1000) == 20
    assert output_cap(CHAT, {"max_output_tokens": 5000}, 1000) == 1000
    assert output_cap(CHAT, {"max_tokens": 50, "n": 3}, 1000) == 150
    assert output_cap(CHAT, {"max_tokens": 50, "n": 2, "best_of": 4}, 1000) == 200


@pytest.mark.parametrize(
    "payload",
    [{"max_tokens": 0}, {"max_tokens": True}, {"max_tokens": "9"}, {"n": 0}, {"best_of": 129}],
)
def test_an_invalid_cap_or_choice_count_is_refused(payload: dict[str, Any]) -> None:
    with pytest.raises(BadRequest) as refused:
        quote(CHAT_MODEL, CHAT, payload, 100)
    assert refused.value.code == "invalid_value"
    assert refused.value.param == next(iter(payload))


def test_an_endpoint_without_output_is_quoted_its_prompt_only() -> None:
    payload = {"input": ["one two", "three"], "max_tokens": 500, "n": 4}
    free = quote(EMBED_MODEL, ENDPOINTS["embeddings"], payload, 60)
    assert free.cap == 0
    assert free.reserve == worst_case(EMBED_MODEL.price, free.prompt_tokens, 0)
