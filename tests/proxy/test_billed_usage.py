"""What is billed from a reported usage (pure): the prompt is never free, local counts run only
when needed, and a record's own numbers reproduce its cost."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway import tokens
from gateway.catalog import Model, Provider
from gateway.endpoints import ENDPOINTS
from gateway.pricing import Price, Tier, Usage, cost
from gateway.proxy.billed import (
    COUNTED,
    OUTPUT_COUNTED,
    PROMPT_COUNTED,
    UPSTREAM,
    Billed,
    LocalCounts,
    LocalPrompt,
    billed_usage,
    usage_record,
)
from gateway.quotes import Output, Quote
from gateway.records import UsageRecord
from gateway.usage_dialects import NormalizedUsage

maybe = st.one_of(st.none(), st.integers(0, 10**6))
reports = st.one_of(
    st.none(),
    st.builds(
        NormalizedUsage,
        prompt_tokens=maybe,
        cached_tokens=maybe,
        cache_write_tokens=maybe,
        cache_write_1h_tokens=maybe,
        prompt_audio_tokens=maybe,
        output_tokens=maybe,
        reasoning_tokens=maybe,
        output_audio_tokens=maybe,
    ),
)


class Counts:
    """A ``Local`` whose counts are given and remember whether they ran; the estimate is the
    text count unless given."""

    def __init__(
        self, prompt: int, text: int, output: int, estimate: int | None = None, bound: int = 0
    ) -> None:
        self.local = LocalPrompt(prompt, min(text, prompt))
        self.produced = output
        self.guess = self.local.text if estimate is None else estimate
        self.prompt_bound = bound
        self.ran: list[str] = []

    def estimate(self) -> int:
        self.ran.append("estimate")
        return self.guess

    def prompt(self) -> LocalPrompt:
        self.ran.append("prompt")
        return self.local

    def output(self) -> int:
        self.ran.append("output")
        return self.produced

    def searches(self) -> int:
        return 0


def bill(
    reported: NormalizedUsage | None,
    counts: Counts,
    *,
    bound: int,
    produces_output: bool = True,
    complete: bool = True,
) -> Billed:
    counts.prompt_bound = bound
    return billed_usage(reported, counts, produces_output=produces_output, complete=complete)


@given(
    reports,
    st.integers(0, 10**6),
    st.integers(0, 10**6),
    st.integers(0, 10**6),
    st.integers(0, 10**6),
    st.booleans(),
    st.booleans(),
)
def test_a_non_empty_prompt_is_never_billed_as_zero_and_the_source_says_why(
    reported: NormalizedUsage | None,
    prompt: int,
    text: int,
    slack: int,
    output: int,
    produces: bool,
    complete: bool,
) -> None:
    counts = Counts(prompt, text, output)
    billed = bill(
        reported, counts, bound=prompt + slack, produces_output=produces, complete=complete
    )
    usage = billed.usage
    if counts.local.text > 0:
        assert usage.prompt_tokens > 0
    assert billed.source in {UPSTREAM, COUNTED, PROMPT_COUNTED, OUTPUT_COUNTED}
    if not produces:
        assert "output" not in counts.ran
    if billed.source in (UPSTREAM, OUTPUT_COUNTED):
        assert reported is not None
        assert usage.prompt_tokens == reported.prompt_tokens
    if billed.source in (UPSTREAM, PROMPT_COUNTED):
        assert reported is not None
        assert usage.completion_tokens == (reported.output_tokens or 0)
    if billed.source in (COUNTED, PROMPT_COUNTED):
        assert usage.prompt_tokens == prompt
    # subsets fit their whole, so the record's numbers reproduce its cost
    assert usage.cached_tokens + usage.cache_write_tokens <= usage.prompt_tokens
    assert usage.reasoning_tokens <= usage.completion_tokens


def test_a_prompt_plausible_against_the_free_bound_is_never_counted() -> None:
    counts = Counts(prompt=300, text=300, output=0)
    reported = NormalizedUsage(prompt_tokens=100, output_tokens=7)
    billed = bill(reported, counts, bound=400)  # 100 * 4 >= 400
    assert counts.ran == []
    assert (billed.usage.prompt_tokens, billed.usage.completion_tokens) == (100, 7)
    assert billed.source == UPSTREAM


def test_a_prompt_reported_as_zero_is_replaced_by_the_count() -> None:
    counts = Counts(prompt=329, text=329, output=0)
    billed = bill(NormalizedUsage(prompt_tokens=0, output_tokens=12), counts, bound=1700)
    assert (billed.usage.prompt_tokens, billed.usage.completion_tokens) == (329, 12)
    assert billed.source == PROMPT_COUNTED
    assert counts.ran == ["prompt"]  # 0 is never plausible: no estimate needed


def test_a_long_prompt_plausible_against_its_estimate_is_not_counted_whole() -> None:
    counts = Counts(prompt=100_000, text=100_000, output=0, estimate=104_000)
    billed = bill(NormalizedUsage(prompt_tokens=98_000, output_tokens=5), counts, bound=450_000)
    assert (billed.usage.prompt_tokens, billed.source) == (98_000, UPSTREAM)
    assert counts.ran == ["estimate"]


def test_a_prompt_implausible_against_its_estimate_is_judged_on_the_count() -> None:
    # the estimate may lean high: the count decides
    counts = Counts(prompt=3000, text=3000, output=0, estimate=9000)
    billed = bill(NormalizedUsage(prompt_tokens=2000, output_tokens=5), counts, bound=13_000)
    assert (billed.usage.prompt_tokens, billed.source) == (2000, UPSTREAM)
    assert counts.ran == ["estimate", "prompt"]
    tiny = Counts(prompt=3000, text=3000, output=0, estimate=9000)
    billed = bill(NormalizedUsage(prompt_tokens=20, output_tokens=5), tiny, bound=13_000)
    assert (billed.usage.prompt_tokens, billed.source) == (3000, PROMPT_COUNTED)


def test_media_allowances_do_not_make_a_real_image_count_implausible() -> None:
    # 2 text tokens + one image at the flat 1000 allowance; the provider counts it at 85.
    counts = Counts(prompt=1009, text=9, output=0)
    billed = bill(NormalizedUsage(prompt_tokens=94, output_tokens=3), counts, bound=5000)
    assert (billed.usage.prompt_tokens, billed.source) == (94, UPSTREAM)


def test_an_early_end_bills_the_larger_of_the_last_report_and_the_delivered_text() -> None:
    # Anthropic's message_start says output_tokens 1; the stream is cut after 40 tokens.
    started = NormalizedUsage(prompt_tokens=50, output_tokens=1)
    cut = bill(started, Counts(50, 50, output=40), bound=50, complete=False)
    assert (cut.usage.completion_tokens, cut.source) == (40, OUTPUT_COUNTED)
    whole = bill(started, Counts(50, 50, output=40), bound=50, complete=True)
    assert (whole.usage.completion_tokens, whole.source) == (1, UPSTREAM)
    final = NormalizedUsage(prompt_tokens=50, output_tokens=45)
    late = bill(final, Counts(50, 50, output=40), bound=50, complete=False)
    assert (late.usage.completion_tokens, late.source) == (45, UPSTREAM)


def test_no_usage_at_all_is_counted_and_an_embedding_produces_no_output() -> None:
    counts = Counts(prompt=5, text=5, output=99)
    billed = bill(None, counts, bound=40, produces_output=False)
    assert (billed.usage.prompt_tokens, billed.usage.completion_tokens) == (5, 0)
    assert billed.source == COUNTED
    assert counts.ran == ["prompt"]


NANO = 1_000_000_000
PRICE = Price(
    input=NANO,
    output=10 * NANO,
    cached_input=NANO // 10,
    cache_write=NANO * 5 // 4,
    tiers=(Tier(1000, Price(input=2 * NANO, output=15 * NANO, cached_input=NANO // 5)),),
)
MODEL = Model("w", Provider("p", "http://upstream"), "up", PRICE)


def record(usage: Usage, reserved: int) -> UsageRecord:
    return usage_record(
        Billed(usage, UPSTREAM),
        MODEL,
        request_id="r",
        user_id="u",
        key_id=None,
        endpoint="chat/completions",
        status="ok",
        latency_ms=1,
        reserved=reserved,
    )


def charged_at(r: UsageRecord) -> Price:
    return Price(
        input=r.price_input,
        output=r.price_output,
        cached_input=r.price_cached_input,
        cache_write=r.price_cache_write,
        cache_write_1h=r.price_cache_write_1h,
        audio_input=r.price_audio_input,
        audio_output=r.price_audio_output,
    )


@given(
    st.builds(
        Usage,
        prompt_tokens=st.integers(0, 5000),
        completion_tokens=st.integers(0, 5000),
        cached_tokens=st.integers(0, 5000),
        cache_write_tokens=st.integers(0, 5000),
    ),
    st.integers(0, 10**8),
)
def test_a_record_keeps_the_prices_it_was_charged_and_its_overdraft(
    usage: Usage, reserved: int
) -> None:
    r = record(usage, reserved)
    assert r.cost == cost(PRICE, usage)
    again = Usage(
        r.prompt_tokens,
        r.completion_tokens,
        cached_tokens=r.cached_tokens,
        cache_write_tokens=r.cache_write_tokens,
    )
    assert cost(charged_at(r), again) == r.cost  # the tier's prices when the tier applied
    assert r.overdraft == max(r.cost - reserved, 0)
    assert r.price_input == (2 * NANO if usage.prompt_tokens > 1000 else NANO)


CHAT = ENDPOINTS["chat/completions"]
CHAT_MODEL = Model("m", Provider("p", "http://upstream"), "gpt-4", Price(NANO, 10 * NANO))


def spy(monkeypatch: pytest.MonkeyPatch, name: str) -> list[object]:
    calls: list[object] = []
    real = getattr(tokens, name)

    def counting(*args: object) -> object:
        calls.append(args)
        return real(*args)

    monkeypatch.setattr(tokens, name, counting)
    return calls


def test_the_prompt_is_counted_once_and_an_exact_quote_is_reused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    counted = spy(monkeypatch, "count_prompt")
    payload = {"messages": [{"role": "user", "content": "one two three"}]}
    local = LocalCounts(
        CHAT_MODEL, CHAT, payload, Quote(0, 500, 500, Output(10)), lambda: ["a", "b"]
    )
    first = local.prompt()
    assert local.prompt() == first
    assert len(counted) == 1
    assert local.estimate() == first.text  # a short prompt is judged on its count
    assert len(counted) == 1
    exact = LocalCounts(CHAT_MODEL, CHAT, payload, Quote(0, 42, 42, Output(10), exact=True), list)
    assert exact.prompt() == LocalPrompt(42, 42)
    assert len(counted) == 1


def test_a_long_prompt_is_estimated_not_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    counted = spy(monkeypatch, "count_prompt")
    estimated = spy(monkeypatch, "estimate_tokens")
    payload = {"messages": [{"role": "user", "content": "many words here " * 5000}]}
    local = LocalCounts(CHAT_MODEL, CHAT, payload, Quote(0, 80_100, 80_100, Output(10)), list)
    assert local.estimate() > 10_000
    assert (len(counted), len(estimated)) == (0, 1)


def test_each_choice_is_counted_on_its_own() -> None:
    local = LocalCounts(CHAT_MODEL, CHAT, {}, Quote(0, 0, 0, Output(10)), lambda: ["ab cd", "ef"])
    enc = tokens.model_encoder("gpt-4", None)
    assert local.output() == tokens.count_text(enc, "ab cd") + tokens.count_text(enc, "ef")


def test_an_honest_report_of_a_short_chat_is_billed_without_running_the_tokenizer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import orjson

    payload = {
        "model": "m",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Say hello in one short sentence."},
        ],
        "max_tokens": 64,
    }
    exact = tokens.count_prompt(tokens.model_encoder("gpt-4", None), CHAT, payload)
    body_bound = tokens.prompt_bound(CHAT, payload, len(orjson.dumps(payload)))
    reported = NormalizedUsage(prompt_tokens=exact, output_tokens=9)
    # The body's bytes alone cannot vouch for this report: the text's bytes can.
    assert exact * 4 < body_bound
    assert body_bound - exact > 8
    assert exact <= tokens.text_bound(CHAT, payload) <= exact * 4
    encoders: list[object] = []
    real = tokens.count_text

    def counting(enc: tokens.Encoder, text: str) -> int:
        encoders.append(enc)
        return real(enc, text)

    monkeypatch.setattr(tokens, "count_text", counting)
    looked_up = spy(monkeypatch, "model_encoder")
    local = LocalCounts(
        CHAT_MODEL, CHAT, payload, Quote(0, body_bound, body_bound, Output(64)), list
    )
    billed = billed_usage(reported, local, produces_output=True, complete=True)
    assert (billed.usage.prompt_tokens, billed.source) == (exact, UPSTREAM)
    assert encoders
    assert all(e is tokens.UTF8_BYTES for e in encoders)
    assert looked_up == []  # tiktoken's tables are not even loaded for such a call
    # A report a quarter below the text's bytes is still judged on the real count.
    low = NormalizedUsage(prompt_tokens=1, output_tokens=9)
    local = LocalCounts(
        CHAT_MODEL, CHAT, payload, Quote(0, body_bound, body_bound, Output(64)), list
    )
    billed = billed_usage(low, local, produces_output=True, complete=True)
    assert (billed.usage.prompt_tokens, billed.source) == (exact, PROMPT_COUNTED)
