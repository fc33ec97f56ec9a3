"""Settings read from the environment: the policy for calls without an output cap."""

from __future__ import annotations

import pytest

from gateway.settings import Settings, SettingsError


def test_uncapped_calls_fit_by_default() -> None:
    assert Settings.from_env({}).uncapped_calls == "fit"
    assert Settings.from_env({"GATEWAY_UNCAPPED_CALLS": ""}).uncapped_calls == "fit"


@pytest.mark.parametrize("value", ["refuse", "REFUSE", " refuse "])
def test_uncapped_calls_can_be_refused(value: str) -> None:
    assert Settings.from_env({"GATEWAY_UNCAPPED_CALLS": value}).uncapped_calls == "refuse"


def test_an_unknown_uncapped_policy_is_refused_at_start() -> None:
    with pytest.raises(SettingsError, match="GATEWAY_UNCAPPED_CALLS must be one of fit, refuse"):
        Settings.from_env({"GATEWAY_UNCAPPED_CALLS": "shrink"})
