from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.money import MoneyError, format_usd, parse_price, parse_usd
from gateway.pricing import Price, Usage, affordable_output, cost, worst_case


@pytest.mark.parametrize(
    ("text", "nanos"),
    [
        ("10", 10 * 10**9),
        ("0.000000001", 1),
        ("2.50", 2_500_000_000),
        (Decimal("1.1"), 1_100_000_000),
    ],
)
def test_parse_usd_is_exact(text, nanos):
    assert parse_usd(text) == nanos


@pytest.mark.parametrize("bad", ["-1", "NaN", "inf", "1e30", "0.0000000001", "x", 1.5, None, True])
def test_parse_usd_refuses_what_cannot_be_money(bad):
    with pytest.raises(MoneyError):
        parse_usd(bad)


def test_prices_must_be_quoted_strings():
    with pytest.raises(MoneyError):
        parse_price(2.5)
    assert parse_price("2.50") == 2_500_000_000


@given(st.integers(min_value=-(10**15), max_value=10**15))
def test_format_then_parse_round_trips(nanos):
    assert parse_usd(format_usd(nanos), allow_negative=True, allow_zero=True) == nanos


prices = st.builds(
    Price,
    input=st.integers(0, 10**12),
    output=st.integers(0, 10**12),
    cached_input=st.one_of(st.none(), st.integers(0, 10**12)),
)
usages = st.builds(
    Usage,
    prompt_tokens=st.integers(0, 10**7),
    completion_tokens=st.integers(0, 10**7),
    cached_tokens=st.integers(0, 10**7),
    reasoning_tokens=st.integers(0, 10**7),
)


@given(prices, usages)
def test_cost_is_never_negative_and_rounds_up_once(price, usage):
    c = cost(price, usage)
    cached = min(usage.cached_tokens, usage.prompt_tokens)
    cached_price = price.input if price.cached_input is None else price.cached_input
    exact = (
        Decimal(usage.prompt_tokens - cached) * price.input
        + Decimal(cached) * cached_price
        + Decimal(usage.completion_tokens) * price.output
    ) / 10**6
    assert c >= 0
    assert exact <= c < exact + 1


@given(prices, st.integers(0, 10**6), st.integers(0, 10**6))
def test_reservation_covers_any_actual_usage_within_the_cap(price, prompt, cap):
    reserve = worst_case(price, prompt, cap)
    assert cost(price, Usage(prompt_tokens=prompt, completion_tokens=cap)) <= reserve
    assert (
        cost(
            price,
            Usage(prompt_tokens=prompt, completion_tokens=cap // 2, cached_tokens=prompt // 2),
        )
        <= reserve
    )


@given(prices.filter(lambda p: p.output > 0), st.integers(0, 10**5), st.integers(0, 10**10))
def test_affordable_output_is_the_largest_cap_that_fits(price, prompt, available):
    most = affordable_output(price, prompt, available)
    if most < 0:
        assert worst_case(price, prompt, 0) > available
    else:
        assert worst_case(price, prompt, most) <= available
        assert worst_case(price, prompt, most + 1) > available
