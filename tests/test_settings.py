"""Settings read from the environment: the policy for calls without an output cap, retry timing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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


def test_retry_timing_is_read_from_the_environment() -> None:
    settings = Settings.from_env(
        {
            "GATEWAY_RETRY_ATTEMPTS": "5",
            "GATEWAY_RETRY_BACKOFF": "0.5",
            "GATEWAY_RETRY_BACKOFF_MAX": "4",
            "GATEWAY_RETRY_AFTER_MAX": "0",
            "GATEWAY_COOLDOWN": "0",
        }
    )
    seen = (
        settings.retry_attempts,
        settings.retry_backoff,
        settings.retry_backoff_max,
        settings.retry_after_max,
        settings.cooldown,
    )
    assert seen == (5, 0.5, 4.0, 0.0, 0.0)
    defaults = Settings.from_env({})
    assert (defaults.retry_attempts, defaults.retry_after_max, defaults.cooldown) == (3, 2.0, 5.0)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("GATEWAY_RETRY_ATTEMPTS", "0", "GATEWAY_RETRY_ATTEMPTS must be >= 1"),
        ("GATEWAY_RETRY_BACKOFF", "-1", "GATEWAY_RETRY_BACKOFF must be 0 or more"),
        ("GATEWAY_RETRY_AFTER_MAX", "inf", "GATEWAY_RETRY_AFTER_MAX must be 0 or more"),
        ("GATEWAY_COOLDOWN", "nan", "GATEWAY_COOLDOWN must be 0 or more"),
        ("GATEWAY_COOLDOWN", "soon", "GATEWAY_COOLDOWN must be a number of seconds"),
        ("GATEWAY_UPSTREAM_TIMEOUT", "0", "GATEWAY_UPSTREAM_TIMEOUT must be positive"),
    ],
)
def test_bad_retry_timing_is_refused_at_start(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env({name: value})


@pytest.mark.parametrize("key", ["change-me", "CHANGEME", "admin", "secret", "short-key01"])
def test_a_placeholder_or_short_admin_key_is_refused(key: str) -> None:
    with pytest.raises(SettingsError, match="GATEWAY_ADMIN_KEY is a placeholder or shorter"):
        Settings.from_env({"GATEWAY_ADMIN_KEY": key})
    assert Settings.from_env({}).admin_key is None  # unset: the admin API is closed
    good = "adm-" + "x" * 20
    assert Settings.from_env({"GATEWAY_ADMIN_KEY": good}).admin_key == good
    with pytest.raises(SettingsError, match="GATEWAY_METRICS_TOKEN is a placeholder or shorter"):
        Settings.from_env({"GATEWAY_METRICS_TOKEN": key})


def test_serve_refuses_the_example_admin_key_in_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "serve"],
        env={**os.environ, "GATEWAY_ADMIN_KEY": "change-me", "GATEWAY_PORT": "9"},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode != 0
    assert done.stderr.startswith("gateway: GATEWAY_ADMIN_KEY is a placeholder")
    assert "Traceback" not in done.stderr
