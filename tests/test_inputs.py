"""Inputs the body does not bound: images by their rule, everything else by the context window,
refused where no rule is configured; and the quote that reserves them."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.catalog import Model, Provider
from gateway.endpoints import ENDPOINTS
from gateway.errors import BadRequest
from gateway.inputs import MAX_TILES, NOTHING_HELD, Held, ImageRule, held_input
from gateway.pricing import Price, worst_case
from gateway.quotes import quote
from gateway.tokens import count_prompt, model_encoder

CHAT, RESPONSES, COMPLETIONS = (
    ENDPOINTS[p] for p in ("chat/completions", "responses", "completions")
)
GPT_4O = ImageRule(85, 170)
WINDOW = 128_000


def image(url: str = "https://x/y.png", detail: str | None = None) -> dict[str, Any]:
    inner: dict[str, Any] = {"url": url}
    if detail is not None:
        inner["detail"] = detail
    return {"type": "image_url", "image_url": inner}


def chat(*parts: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": [{"type": "text", "text": "look"}, *parts]}]}


# -- OpenAI's tile formula ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("width", "height", "detail", "tokens"),
    [
        (1024, 1024, "high", 765),  # OpenAI's worked example: 768 x 768, 4 tiles
        (2048, 4096, "high", 1105),  # fits 1024 x 2048, then 768 x 1536: 6 tiles
        (4096, 8192, None, 1105),  # no detail is "auto": the high-detail formula
        (512, 512, "high", 255),  # never scaled up: one tile
        (513, 513, "high", 765),
        (8000, 8000, "low", 85),  # low detail: the base alone, whatever the size
    ],
)
def test_the_tile_formula_matches_openais_examples(
    width: int, height: int, detail: str | None, tokens: int
) -> None:
    assert GPT_4O.tokens(width, height, detail) == tokens


@given(
    st.integers(min_value=1, max_value=40_000),
    st.integers(min_value=1, max_value=40_000),
    st.sampled_from([None, "auto", "high", "low", "original"]),
    st.integers(min_value=0, max_value=10_000),
    st.integers(min_value=0, max_value=10_000),
)
def test_no_image_size_counts_more_than_the_rule_reserves(
    width: int, height: int, detail: str | None, base: int, tile: int
) -> None:
    rule = ImageRule(base, tile)
    assert rule.tokens(width, height, detail) <= rule.most(detail)


def test_the_largest_image_takes_eight_tiles() -> None:
    assert GPT_4O.tokens(2048, 768) == GPT_4O.most() == 85 + 170 * MAX_TILES == 1445
    assert ImageRule(2489).most("high") == ImageRule(2489).tokens(10, 10) == 2489


# -- what is held, per kind -----------------------------------------------------------------


def held(endpoint: Any, payload: dict[str, Any], **model: Any) -> Held:
    config = {"window": WINDOW, "images": GPT_4O, **model}
    return held_input(endpoint, payload, **config)


def test_text_alone_holds_nothing() -> None:
    cited = {
        "type": "message",
        "role": "assistant",
        "content": [
            {"type": "output_text", "text": "see", "annotations": [{"type": "url_citation"}]}
        ],
    }
    assert held(CHAT, {"messages": [{"role": "user", "content": "hi"}]}) is NOTHING_HELD
    assert held(RESPONSES, {"input": [cited, {"type": "function_call_output"}]}) is NOTHING_HELD
    assert held(COMPLETIONS, {"prompt": [[1, 2, 3], [4]]}) is NOTHING_HELD
    assert held(RESPONSES, {"input": "x", "previous_response_id": None}) is NOTHING_HELD


def test_images_are_reserved_by_the_models_rule_per_image() -> None:
    found = held(CHAT, chat(image(), image(detail="low"), image(detail="high")))
    assert found == Held(1445 + 85 + 1445, why="3 images")
    responses = {"input": [{"role": "user", "content": [{"type": "input_image", "detail": "low"}]}]}
    assert held(RESPONSES, responses).tokens == 85


def test_images_without_a_rule_are_reserved_at_the_context_window() -> None:
    assert held(CHAT, chat(image()), images=None) == Held(WINDOW, window=True, why="image inputs")


@pytest.mark.parametrize(
    ("endpoint", "payload", "param"),
    [
        (
            RESPONSES,
            {"input": "continue", "previous_response_id": "resp_1"},
            "previous_response_id",
        ),
        (RESPONSES, {"input": "go on", "conversation": {"id": "conv_1"}}, "conversation"),
        (RESPONSES, {"prompt": {"id": "pmpt_1", "variables": {}}}, "prompt"),
        (RESPONSES, {"input": [{"type": "item_reference", "id": "msg_1"}]}, "input"),
        (
            CHAT,
            {"messages": [], "extra_body": {"google": {"cached_content": "cachedContents/1"}}},
            "extra_body.google.cached_content",
        ),
        (
            CHAT,
            chat({"type": "input_audio", "input_audio": {"data": "UklG", "format": "wav"}}),
            "messages",
        ),
        (CHAT, {"messages": [{"role": "assistant", "audio": {"id": "audio_1"}}]}, "messages"),
        (CHAT, chat({"type": "file", "file": {"file_id": "file-1"}}), "messages"),
        (RESPONSES, {"input": [{"role": "user", "content": [{"type": "input_file"}]}]}, "input"),
        (CHAT, chat({"type": "video_url", "video_url": {"url": "v.mp4"}}), "messages"),
        (RESPONSES, {"input": [{"type": "web_search_call", "id": "ws_1"}]}, "input"),
    ],
)
def test_what_the_body_does_not_carry_takes_the_context_window_or_is_refused(
    endpoint: Any, payload: dict[str, Any], param: str
) -> None:
    found = held(endpoint, payload)
    assert found.tokens == WINDOW
    assert found.window
    with pytest.raises(BadRequest) as refused:
        held(endpoint, payload, window=None)
    assert refused.value.code == "unbounded_input"
    assert refused.value.param == param
    assert refused.value.status == 400
    assert "context_window" in refused.value.message


def test_images_with_no_rule_and_no_window_are_refused() -> None:
    with pytest.raises(BadRequest) as refused:
        held(CHAT, chat(image()), images=None, window=None)
    assert refused.value.param == "messages"


def test_a_deeply_nested_body_is_walked_without_recursion() -> None:
    nested: Any = image()
    for _ in range(5_000):
        nested = [nested]
    assert held(CHAT, {"messages": nested}).tokens == 1445


# -- the quote ------------------------------------------------------------------------------

PROVIDER = Provider("p", "http://upstream")
M = Price(input=10**9, output=10**10, cached_input=10**8)  # $1 / $10 per 1M, as the cases


def model(**limits: Any) -> Model:
    return Model("m", PROVIDER, "up-model", M, "chat", 1000, **limits)


def test_a_continuation_is_reserved_at_the_whole_context_window() -> None:
    # BH-16: "continue" after previous_response_id; the provider bills the stored conversation.
    payload = {"model": "m", "previous_response_id": "resp_1", "input": "continue"}
    free = quote(model(context_window=200_000), RESPONSES, payload, len(orjson.dumps(payload)))
    assert free.input_tokens == 200_000
    assert free.reserve == worst_case(M, 200_000, 1000)
    assert free.reserve >= 150_000 * 1_000 + 50 * 10_000  # what the upstream bills in BH-16
    assert free.reserve > 20_000_000  # so a $0.02 balance is refused


def test_a_continuation_on_a_model_without_a_window_is_refused() -> None:
    payload = {"model": "m", "previous_response_id": "resp_1", "input": "continue"}
    with pytest.raises(BadRequest):
        quote(model(), RESPONSES, payload, len(orjson.dumps(payload)))


def test_images_add_their_rule_to_the_prompt_and_the_window_caps_the_input() -> None:
    payload = chat(image(), image())
    body = len(orjson.dumps(payload))
    free = quote(model(context_window=WINDOW, image_tokens=GPT_4O), CHAT, payload, body)
    assert free.input_tokens == free.prompt_tokens + 2 * 1445
    small = quote(model(context_window=500, image_tokens=GPT_4O), CHAT, payload, body)
    assert small.input_tokens == 500
    assert small.reserve == worst_case(M, 500, 1000)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(1, 10_000),
            st.integers(1, 10_000),
            st.sampled_from([None, "auto", "low", "high"]),
        ),
        max_size=6,
    ),
    st.sampled_from([ImageRule(85, 170), ImageRule(2833, 5667), ImageRule(2489)]),
)
def test_the_input_reserved_covers_every_image_at_any_size(
    images: list[tuple[int, int, str | None]], rule: ImageRule
) -> None:
    # What the provider bills: the text as counted, and each image by its formula.
    payload = chat(*(image(detail=detail) for _, _, detail in images))
    free = quote(model(image_tokens=rule), CHAT, payload, len(orjson.dumps(payload)))
    text = count_prompt(model_encoder("up-model", None), CHAT, payload)
    billed = text + sum(rule.tokens(w, h, detail) for w, h, detail in images)
    assert free.input_tokens >= billed
    assert free.reserve >= worst_case(M, billed, 1000)


def test_the_window_caps_even_a_text_prompt_bound() -> None:
    payload = {"messages": [{"role": "user", "content": "x " * 5000}]}
    free = quote(model(context_window=1000), CHAT, payload, len(orjson.dumps(payload)))
    assert free.prompt_tokens > 1000
    assert free.input_tokens == 1000
