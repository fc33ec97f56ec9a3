from __future__ import annotations

import json
from dataclasses import fields
from functools import reduce
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.usage_dialects import (
    DIALECTS,
    NormalizedUsage,
    merge,
    normalize,
    plausible_prompt,
    with_prompt,
)

FIXTURES = Path(__file__).parent / "fixtures" / "usage"
CASES = sorted(FIXTURES.glob("*/*.json"))
PROVIDERS = {
    "openai", "azure", "anthropic", "gemini", "deepseek", "mistral", "groq", "together",
    "fireworks", "openrouter", "vllm", "ollama", "llamacpp",
}  # fmt: skip


def fold(inputs: list[Any], dialect: str | None) -> NormalizedUsage | None:
    return reduce(merge, (normalize(obj, dialect=dialect) for obj in inputs), None)


def as_dict(usage: NormalizedUsage | None) -> dict[str, int | None] | None:
    return None if usage is None else usage.as_dict()


# ---- recorded shapes ---------------------------------------------------------------------


@pytest.mark.parametrize("path", CASES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_fixture_normalizes_to_its_expected_usage(path: Path) -> None:
    case = json.loads(path.read_text())
    got = fold(case["inputs"], case["dialect"])
    assert as_dict(got) == case["expected"], case["note"]
    # Stream reports are either final or cumulative: any order bills the same.
    assert fold(case["inputs"][::-1], case["dialect"]) == got
    if "plausibility" in case:
        rule = case["plausibility"]
        reported = None if got is None else got.prompt_tokens
        assert plausible_prompt(reported, rule["local_estimate"]) is rule["plausible"]


def test_every_provider_has_fixtures_and_every_fixture_names_its_source() -> None:
    assert PROVIDERS <= {p.parent.name for p in CASES}
    for path in CASES:
        case = json.loads(path.read_text())
        assert case["source"], path
        assert case["note"], path
        assert case["inputs"], path


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        # BH-04 (a) and (b): thinking reported outside completion_tokens.
        ("gemini/openai_compat_thinking_a", {"prompt_tokens": 21, "output_tokens": 60}),
        ("gemini/openai_compat_thinking_b", {"prompt_tokens": 20, "output_tokens": 603}),
        # BH-06: a reported 0 stays 0 (what was reported); plausibility flags it.
        ("ollama/openai_compat_zero_prompt", {"prompt_tokens": 0, "output_tokens": 12}),
        ("openai/chat_stream_usage_on_finish_chunk", {"cached_tokens": 15872}),  # BH-01
        ("vllm/chat_stream_continuous", {"prompt_tokens": 15, "output_tokens": 5}),  # BH-03
        ("openai/chat", {"output_tokens": 482, "reasoning_tokens": 448}),  # BH-05
        ("openai/embeddings", {"prompt_tokens": 8}),  # BH-20 (a)
        ("openai/responses_stream", {"cached_tokens": 20, "reasoning_tokens": 12}),  # BH-21
    ],
)
def test_bug_report_cases_are_pinned(path: str, expected: dict[str, int]) -> None:
    case = json.loads((FIXTURES / f"{path}.json").read_text())
    got = fold(case["inputs"], case["dialect"])
    assert got is not None
    assert {k: got.as_dict()[k] for k in expected} == expected


def test_bh06_zero_prompt_is_flagged_for_a_329_token_prompt() -> None:
    usage = normalize({"usage": {"prompt_tokens": 0, "completion_tokens": 12, "total_tokens": 12}})
    assert usage is not None
    assert usage.prompt_tokens == 0
    assert usage.output_tokens == 12
    assert not plausible_prompt(usage.prompt_tokens, 329)
    billed = with_prompt(usage, 329)
    assert (billed.prompt_tokens, billed.output_tokens) == (329, 12)


def test_nothing_usage_like_is_none() -> None:
    nothing: list[object] = [None, [], "x", {}, {"usage": None}, {"usage": {}}]
    nothing += [{"choices": []}, {"response": {"usage": None}}, {"x_groq": {"id": "req_1"}}]
    nothing += [{"usage": {"type": "duration", "seconds": 3}}]  # a transcription billed by time
    for obj in nothing:
        assert normalize(obj) is None


def test_an_unknown_dialect_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown usage dialect"):
        normalize({"usage": {"prompt_tokens": 1}}, dialect="anthropc")
    assert set(DIALECTS) == {"anthropic", "xai"}


def test_with_prompt_clips_subsets_to_the_counted_prompt() -> None:
    usage = NormalizedUsage(
        prompt_tokens=None, cached_tokens=90, cache_write_tokens=50, cache_write_1h_tokens=40
    )
    billed = with_prompt(usage, 100)
    assert (billed.cached_tokens, billed.cache_write_tokens, billed.cache_write_1h_tokens) == (
        90,
        10,
        10,
    )
    assert billed.cache_write_5m_tokens == 0


def test_with_prompt_keeps_every_count_but_the_prompt() -> None:
    # A web search is billed upstream however its prompt was counted.
    usage = NormalizedUsage(
        prompt_tokens=0, output_tokens=7, upstream_cost_nanos=3, web_search_requests=2
    )
    billed = with_prompt(usage, 100)
    assert billed.as_dict() == {**usage.as_dict(), "prompt_tokens": 100}


# ---- properties --------------------------------------------------------------------------

counts = st.integers(0, 10**7)
maybe = st.one_of(st.none(), counts)
json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**9), 10**9),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
)
USAGE_KEYS = [
    "usage", "response", "message", "x_groq", "usageMetadata", "timings", "prompt_tokens",
    "completion_tokens", "total_tokens", "input_tokens", "output_tokens", "cached_tokens",
    "prompt_tokens_details", "completion_tokens_details", "input_tokens_details",
    "output_tokens_details", "reasoning_tokens", "audio_tokens", "cache_read_input_tokens",
    "cache_creation_input_tokens", "cache_creation", "ephemeral_5m_input_tokens",
    "ephemeral_1h_input_tokens", "prompt_cache_hit_tokens", "prompt_cache_miss_tokens",
    "cache_write_tokens", "promptTokenCount", "candidatesTokenCount", "thoughtsTokenCount",
    "totalTokenCount", "cachedContentTokenCount", "toolUsePromptTokenCount",
    "promptTokensDetails", "modality", "tokenCount", "prompt_eval_count", "eval_count",
    "tokens_evaluated", "tokens_predicted", "prompt_n", "cache_n", "predicted_n", "cost",
    "cost_in_usd_ticks",
]  # fmt: skip
json_values = st.recursive(
    json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(USAGE_KEYS), inner, max_size=6),
    ),
    max_leaves=30,
)


def assert_well_formed(u: NormalizedUsage) -> None:
    for f in fields(u):
        value = getattr(u, f.name)
        assert value is None or (type(value) is int and value >= 0), (f.name, value)
    if u.prompt_tokens is not None:
        taken = (u.cached_tokens or 0) + (u.cache_write_tokens or 0)
        assert taken <= u.prompt_tokens
        assert (u.prompt_audio_tokens or 0) <= u.prompt_tokens
    assert (u.cache_write_1h_tokens or 0) <= (u.cache_write_tokens or 0) or (
        u.cache_write_tokens is None
    )
    if u.output_tokens is not None:
        assert (u.reasoning_tokens or 0) <= u.output_tokens
        assert (u.output_audio_tokens or 0) <= u.output_tokens


@given(json_values)
def test_any_json_normalizes_without_error_and_no_class_is_negative(obj: Any) -> None:
    got = normalize(obj)
    if got is not None:
        assert_well_formed(got)
        assert got.cache_write_5m_tokens is None or got.cache_write_5m_tokens >= 0


@given(prompt=maybe, completion=maybe, reasoning=maybe, total=maybe, cached=maybe, audio=maybe)
def test_output_never_below_completion_nor_reasoning_outside_it(
    prompt: int | None,
    completion: int | None,
    reasoning: int | None,
    total: int | None,
    cached: int | None,
    audio: int | None,
) -> None:
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": total,
        "prompt_tokens_details": {"cached_tokens": cached},
        "completion_tokens_details": {"reasoning_tokens": reasoning, "audio_tokens": audio},
    }
    got = normalize({"usage": usage})
    if got is None:
        assert prompt is completion is reasoning is cached is audio is None
        return
    assert_well_formed(got)
    out = got.output_tokens
    if completion is not None:
        assert out is not None
        assert out >= completion
    if reasoning is not None:
        assert out is not None
        assert out >= reasoning
        if completion is not None and reasoning > completion:  # cannot be a subset
            assert out >= completion + reasoning
    whole_prompt = got.prompt_tokens  # cached tokens above prompt_tokens were added to it
    if total is not None and whole_prompt and total >= whole_prompt:
        assert out is not None
        assert out >= total - whole_prompt


@given(prompt=maybe, candidates=maybe, thoughts=maybe, total=maybe)
def test_gemini_thoughts_are_always_billed_beside_candidates(
    prompt: int | None, candidates: int | None, thoughts: int | None, total: int | None
) -> None:
    meta = {
        "promptTokenCount": prompt,
        "candidatesTokenCount": candidates,
        "thoughtsTokenCount": thoughts,
        "totalTokenCount": total,
    }
    got = normalize({"usageMetadata": meta})
    if candidates is not None and thoughts is not None:
        assert got is not None
        assert got.output_tokens is not None
        assert got.output_tokens >= candidates + thoughts


@given(
    present=st.sets(
        st.sampled_from(["prompt_tokens", "completion_tokens", "cached", "reasoning", "audio"])
    ),
    n=counts,
)
def test_unknown_stays_none_never_zero(present: set[str], n: int) -> None:
    usage: dict[str, Any] = {"prompt_tokens_details": {}, "completion_tokens_details": {}}
    for key in present & {"prompt_tokens", "completion_tokens"}:
        usage[key] = n
    if "cached" in present:
        usage["prompt_tokens_details"]["cached_tokens"] = 0
    if "reasoning" in present:
        usage["completion_tokens_details"]["reasoning_tokens"] = 0
    if "audio" in present:
        usage["prompt_tokens_details"]["audio_tokens"] = 0
    got = normalize({"usage": usage})
    if not present - {"audio"}:  # an audio breakdown alone says nothing billable
        assert got is None
        return
    assert got is not None
    assert (got.prompt_tokens is None) == ("prompt_tokens" not in present)
    assert (got.output_tokens is None) == (not present & {"completion_tokens", "reasoning"})
    assert (got.cached_tokens is None) == ("cached" not in present)
    assert (got.reasoning_tokens is None) == ("reasoning" not in present)
    assert (got.prompt_audio_tokens is None) == ("audio" not in present)
    assert got.cache_write_tokens is None
    assert got.upstream_cost_nanos is None


@st.composite
def cumulative_openai_reports(draw: st.DrawFn) -> list[dict[str, Any]]:
    """vLLM continuous usage: the same prompt, a running completion count, every chunk."""
    prompt = draw(counts)
    steps = draw(st.lists(st.integers(0, 50), min_size=1, max_size=8))
    cached = draw(st.integers(0, prompt))
    running, reports = 0, []
    for step in steps:
        running += step
        usage: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": running}
        usage["total_tokens"] = prompt + running
        if draw(st.booleans()):
            usage["prompt_tokens_details"] = {"cached_tokens": cached}
        reports.append({"object": "chat.completion.chunk", "choices": [], "usage": usage})
    return reports


@given(st.data(), cumulative_openai_reports())
def test_merge_is_order_safe_for_cumulative_reports(
    data: st.DataObject, reports: list[dict[str, Any]]
) -> None:
    in_order = fold(reports, None)
    assert in_order is not None
    last = reports[-1]["usage"]
    assert (in_order.prompt_tokens, in_order.output_tokens) == (
        last["prompt_tokens"],
        last["completion_tokens"],
    )
    shuffled = data.draw(st.permutations(reports))
    assert fold(shuffled, None) == in_order


@given(
    data=st.data(),
    input_tokens=counts,
    read=counts,
    write=counts,
    outputs=st.lists(st.integers(1, 10**5), min_size=1, max_size=6).map(sorted),
    repeat_input=st.booleans(),
)
def test_anthropic_start_and_cumulative_deltas_in_any_order(
    data: st.DataObject,
    input_tokens: int,
    read: int,
    write: int,
    outputs: list[int],
    repeat_input: bool,
) -> None:
    start_usage = {"input_tokens": input_tokens, "output_tokens": 1}
    start_usage |= {"cache_read_input_tokens": read, "cache_creation_input_tokens": write}
    events: list[dict[str, Any]] = [{"type": "message_start", "message": {"usage": start_usage}}]
    for out in outputs:
        usage: dict[str, Any] = {"output_tokens": out}
        if repeat_input:  # newer API: message_delta repeats the (cumulative) input counts
            usage |= {k: v for k, v in start_usage.items() if k != "output_tokens"}
        events.append({"type": "message_delta", "usage": usage})
    want = NormalizedUsage(
        prompt_tokens=input_tokens + read + write,
        cached_tokens=read,
        cache_write_tokens=write,
        output_tokens=max(outputs[-1], 1),
    )
    assert fold(events, None) == want
    assert fold(data.draw(st.permutations(events)), None) == want


reports = st.builds(NormalizedUsage, *([maybe] * len(fields(NormalizedUsage))))


@given(reports, reports, reports)
def test_merge_is_commutative_associative_and_idempotent(
    a: NormalizedUsage, b: NormalizedUsage, c: NormalizedUsage
) -> None:
    assert merge(a, b) == merge(b, a)
    assert merge(merge(a, b), c) == merge(a, merge(b, c))
    assert merge(a, a) == a
    assert merge(a, None) == a == merge(None, a)


@given(reported=st.one_of(st.none(), st.integers(-5, 10**6)), local=st.integers(-5, 10**6))
def test_plausible_prompt_rule(reported: int | None, local: int) -> None:
    verdict = plausible_prompt(reported, local)
    if reported is None or reported < 0:
        assert not verdict
    elif local <= 0:
        assert verdict
    elif reported == 0:
        assert not verdict  # a non-empty prompt is never billed as 0 tokens
    elif reported >= local:
        assert verdict
    elif reported * 4 < local and local - reported > 8:
        assert not verdict
