"""Token classes priced end to end: cache writes at their own price, a long-context tier for
the whole call, and a provider's usage dialect from models.yaml (tests/support/scripted.py:
model `w`, model `grok` behind a provider with ``dialect: xai``)."""

from __future__ import annotations

import pytest

from tests.support.gateway import RunningGateway, usd
from tests.support.scripted import Caller, ScriptedUpstream, chat, completion, raw


def cache_usage(prompt: int) -> dict[str, object]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": 10,
        "prompt_tokens_details": {"cached_tokens": 20, "cache_write_tokens": 30},
    }


@pytest.mark.parametrize(
    ("prompt", "want", "prices"),
    [
        # 50 plain at $1, 20 read at $0.10, 30 written at $1.25; 10 out at $10
        (100, 50 * 1000 + 20 * 100 + 30 * 1250 + 10 * 10_000, ("1.00", "0.10", "1.25", "10.00")),
        # above 1000 prompt tokens the tier prices the whole call
        (
            2000,
            1950 * 2000 + 20 * 200 + 30 * 2500 + 10 * 15_000,
            ("2.00", "0.20", "2.50", "15.00"),
        ),
    ],
    ids=["base", "long-context-tier"],
)
def test_cache_writes_and_tiers_are_priced_and_recorded(
    scripted_gw: RunningGateway,
    scripted: ScriptedUpstream,
    prompt: int,
    want: int,
    prices: tuple[str, ...],
) -> None:
    scripted.routes["/v1/chat/completions"] = raw(completion("ok", cache_usage(prompt)))
    body = {**chat("hi"), "model": "w"}
    _, _, row, debit = Caller(scripted_gw).call("chat/completions", body)
    assert (row["prompt_tokens"], row["cached_tokens"], row["cache_write_tokens"]) == (
        prompt,
        20,
        30,
    )
    charged = row["price_per_1m_tokens"]
    names = ("input", "cached_input", "cache_write", "output")
    assert tuple(charged[n] for n in names) == prices
    assert usd(row["cost"]) == debit == want


def test_anthropic_cache_counts_under_openai_names_are_read_without_configuration(
    scripted_gw: RunningGateway, scripted: ScriptedUpstream
) -> None:
    # Claude's own counts beside input_tokens: reads and writes are added to the prompt.
    usage = {
        "input_tokens": 10,
        "cache_read_input_tokens": 100,
        "cache_creation_input_tokens": 40,
        "cache_creation": {"ephemeral_5m_input_tokens": 30, "ephemeral_1h_input_tokens": 10},
        "output_tokens": 5,
    }
    scripted.routes["/v1/chat/completions"] = raw(completion("ok", usage))
    _, _, row, debit = Caller(scripted_gw).call("chat/completions", {**chat("hi"), "model": "w"})
    assert (row["prompt_tokens"], row["cached_tokens"]) == (150, 100)
    assert (row["cache_write_tokens"], row["cache_write_1h_tokens"]) == (40, 10)
    assert debit == 10 * 1000 + 100 * 100 + 30 * 1250 + 10 * 2000 + 5 * 10_000


@pytest.mark.parametrize(("model", "output"), [("m", 5), ("grok", 5 + 3)])
def test_a_providers_dialect_refines_what_its_fields_leave_open(
    scripted_gw: RunningGateway, scripted: ScriptedUpstream, model: str, output: int
) -> None:
    # No total_tokens: only the dialect tells whether reasoning is inside completion_tokens.
    usage = {
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "completion_tokens_details": {"reasoning_tokens": 3},
    }
    scripted.routes["/v1/chat/completions"] = raw(completion("ok", usage))
    _, _, row, debit = Caller(scripted_gw).call("chat/completions", {**chat("hi"), "model": model})
    assert row["completion_tokens"] == output
    assert debit == 10 * 1000 + output * 10_000
