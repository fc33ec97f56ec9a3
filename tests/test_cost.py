"""What a finished call costs: every token class at its own price, long-context tiers, one
rounding up, and a reservation that is never below a real cost."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.pricing import Price, Tier, Usage, affordable_output, cost, worst_case

NANO = 1_000_000_000
# The cases' model `m`: $1.00 in, $0.10 cached, $10.00 out per 1M tokens.
M = Price(input=NANO, cached_input=NANO // 10, output=10 * NANO)

rates = st.integers(0, 10**12)
maybe = st.one_of(st.none(), rates)


def flat_prices() -> st.SearchStrategy[Price]:
    return st.builds(
        Price,
        input=rates,
        output=rates,
        cached_input=maybe,
        cache_write=maybe,
        cache_write_1h=maybe,
        audio_input=maybe,
        audio_output=maybe,
    )


@st.composite
def prices(draw: st.DrawFn) -> Price:
    base = draw(flat_prices())
    thresholds = sorted(set(draw(st.lists(st.integers(1, 10**7), max_size=3))))
    tiers = tuple(Tier(t, draw(flat_prices())) for t in thresholds)
    return Price(
        input=base.input,
        output=base.output,
        cached_input=base.cached_input,
        cache_write=base.cache_write,
        cache_write_1h=base.cache_write_1h,
        audio_input=base.audio_input,
        audio_output=base.audio_output,
        tiers=tiers,
    )


counts = st.integers(0, 2 * 10**7)
usages = st.builds(
    Usage,
    prompt_tokens=counts,
    completion_tokens=counts,
    cached_tokens=counts,
    reasoning_tokens=counts,
    cache_write_tokens=counts,
    cache_write_1h_tokens=counts,
    prompt_audio_tokens=counts,
    output_audio_tokens=counts,
)


def reference(price: Price, u: Usage) -> Fraction:
    """The README's formula, written out independently: nano-USD, not yet rounded."""
    p = price
    for tier in price.tiers:
        if u.prompt_tokens > tier.above_input_tokens:
            p = tier.price
    first = p.input if p.cached_input is None else p.cached_input
    write = p.input if p.cache_write is None else p.cache_write
    write_1h = write if p.cache_write_1h is None else p.cache_write_1h
    audio_in = p.input if p.audio_input is None else p.audio_input
    audio_out = p.output if p.audio_output is None else p.audio_output
    left = u.prompt_tokens
    cached = min(u.cached_tokens, left)
    left -= cached
    writes = min(u.cache_write_tokens, left)
    left -= writes
    hour = min(u.cache_write_1h_tokens, writes)
    audio = min(u.prompt_audio_tokens, left)
    left -= audio
    spoken = min(u.output_audio_tokens, u.completion_tokens)
    nanos_per_1m = (
        left * p.input
        + cached * first
        + (writes - hour) * write
        + hour * write_1h
        + audio * audio_in
        + (u.completion_tokens - spoken) * p.output
        + spoken * audio_out
    )
    return Fraction(nanos_per_1m, 1_000_000)


@settings(max_examples=300)
@given(prices(), usages)
def test_every_class_is_charged_at_its_price_rounded_up_once(price: Price, usage: Usage) -> None:
    exact = reference(price, usage)
    charged = cost(price, usage)
    assert charged >= 0
    assert exact <= charged < exact + 1


@settings(max_examples=300)
@given(prices(), usages, counts, counts)
def test_the_reservation_is_never_below_a_real_cost_within_its_counts(
    price: Price, usage: Usage, more_prompt: int, more_output: int
) -> None:
    prompt, output = usage.prompt_tokens, usage.completion_tokens
    assert cost(price, usage) <= worst_case(price, prompt, output)
    assert cost(price, usage) <= worst_case(price, prompt + more_prompt, output + more_output)


@settings(max_examples=200)
@given(prices().filter(lambda p: p.output > 0), st.integers(0, 10**6), st.integers(0, 10**10))
def test_affordable_output_is_the_largest_cap_that_fits_any_price(
    price: Price, prompt: int, available: int
) -> None:
    most = affordable_output(price, prompt, available)
    if most < 0:
        assert worst_case(price, prompt, 0) > available
    else:
        assert worst_case(price, prompt, most) <= available
        assert worst_case(price, prompt, most + 1) > available


def test_cached_and_plain_prompt_and_output_at_the_case_prices() -> None:
    # BH-01: 16111 prompt of which 15872 cached, 2 completion.
    assert cost(M, Usage(16111, 2, cached_tokens=15872)) == 239 * 1000 + 15872 * 100 + 2 * 10_000
    assert cost(M, Usage(16111, 2, cached_tokens=15872)) == 1_846_200
    # BH-21: 50 in (20 cached) + 30 out (12 reasoning, inside the output).
    assert cost(M, Usage(50, 30, cached_tokens=20, reasoning_tokens=12)) == 332_000


def test_cache_writes_and_audio_have_their_own_prices() -> None:
    price = Price(
        input=3 * NANO,
        output=15 * NANO,
        cached_input=NANO * 3 // 10,
        cache_write=NANO * 375 // 100,
        cache_write_1h=6 * NANO,
        audio_input=40 * NANO,
        audio_output=80 * NANO,
    )
    usage = Usage(
        1000,
        100,
        cached_tokens=200,
        cache_write_tokens=300,
        cache_write_1h_tokens=100,
        prompt_audio_tokens=50,
        output_audio_tokens=10,
    )
    # 450 plain, 200 read, 200 written 5m, 100 written 1h, 50 audio in; 90 text, 10 audio out
    want = (450 * 3000 + 200 * 300 + 200 * 3750 + 100 * 6000 + 50 * 40_000) + (
        90 * 15_000 + 10 * 80_000
    )
    assert cost(price, usage) == want


def test_unset_class_prices_fall_back() -> None:
    plain = Price(input=NANO, output=10 * NANO)
    usage = Usage(100, 10, cache_write_tokens=40, cache_write_1h_tokens=10, prompt_audio_tokens=5)
    assert cost(plain, usage) == 100 * 1000 + 10 * 10_000
    five_minutes = Price(input=NANO, output=10 * NANO, cache_write=2 * NANO)
    # the 1h writes fall back to the 5m write price, not to input
    assert cost(five_minutes, usage) == 55 * 1000 + 40 * 2000 + 5 * 1000 + 10 * 10_000


def test_a_tier_prices_the_whole_call_only_above_its_threshold() -> None:
    long = Price(input=2 * NANO, cached_input=NANO // 5, output=15 * NANO)
    price = Price(input=NANO, cached_input=NANO // 10, output=10 * NANO, tiers=(Tier(200, long),))
    at = Usage(200, 10, cached_tokens=100)
    above = Usage(201, 10, cached_tokens=100)
    assert cost(price, at) == 100 * 1000 + 100 * 100 + 10 * 10_000
    assert cost(price, above) == 101 * 2000 + 100 * 200 + 10 * 15_000
    assert price.at(200) is price
    assert price.at(201) is long


def test_the_highest_reached_tier_wins() -> None:
    t1 = Price(input=2 * NANO, output=20 * NANO)
    t2 = Price(input=3 * NANO, output=30 * NANO)
    price = Price(input=NANO, output=10 * NANO, tiers=(Tier(100, t1), Tier(1000, t2)))
    assert [price.at(n) for n in (100, 101, 1000, 1001)] == [price, t1, t1, t2]


def test_the_reservation_reaches_a_tier_only_when_the_prompt_can() -> None:
    long = Price(input=4 * NANO, output=40 * NANO)
    price = Price(input=NANO, output=10 * NANO, tiers=(Tier(1000, long),))
    assert worst_case(price, 1000, 10) == 1000 * 1000 + 10 * 10_000
    assert worst_case(price, 1001, 10) == 1001 * 4000 + 10 * 40_000


@pytest.mark.parametrize(
    ("price", "dear_in"),
    [
        (Price(input=NANO, output=0, cache_write=2 * NANO), 2000),
        (Price(input=NANO, output=0, cache_write_1h=3 * NANO), 3000),
        (Price(input=NANO, output=0, audio_input=5 * NANO), 5000),
        (Price(input=NANO, output=0, cached_input=NANO // 10), 1000),
    ],
)
def test_the_reservation_takes_the_dearest_prompt_class(price: Price, dear_in: int) -> None:
    assert worst_case(price, 10, 0) == 10 * dear_in
