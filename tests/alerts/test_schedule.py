"""The documented retry schedule, the signature's tolerance and the settings' refusals."""

from __future__ import annotations

import pytest

from gateway.alerts import signature
from gateway.alerts.sender import Schedule
from gateway.settings import Settings, SettingsError


def test_the_default_schedule_is_the_documented_one() -> None:
    settings = Settings.from_env({"GATEWAY_ALERT_WEBHOOK_SECRET": "s"})
    schedule = Schedule.from_settings(settings)
    delays = [schedule.delay(n) for n in range(1, schedule.max_attempts)]
    assert delays == [30, 60, 120, 240, 480, 960, 1920, 3600, 3600, 3600, 3600]
    assert 4.5 * 3600 < sum(delays) < 5.5 * 3600  # "about 5 h after the first"


def test_a_signature_outside_the_tolerance_or_without_v1_is_refused() -> None:
    body = b'{"id": "evt_1"}'
    header = signature.sign("s", body, timestamp=1_000)
    assert signature.verify(body, header, "s", now=1_200) == 1_000
    with pytest.raises(signature.SignatureError, match="tolerance"):
        signature.verify(body, header, "s", now=1_400)
    with pytest.raises(signature.SignatureError):
        signature.verify(body, "t=1000", "s", now=1_000)
    # A rotated secret: any matching v1 passes.
    rotated = f"{header},v1={signature.compute('new', 1_000, body)}"
    assert signature.verify(body, rotated, "new", now=1_000) == 1_000


def test_webhook_urls_need_a_secret_and_a_scheme_without_being_echoed() -> None:
    with pytest.raises(SettingsError, match="GATEWAY_ALERT_WEBHOOK_SECRET"):
        Settings.from_env({"GATEWAY_ALERT_WEBHOOK_URLS": "https://x.example/h"})
    with pytest.raises(SettingsError) as refused:
        Settings.from_env(
            {
                "GATEWAY_ALERT_WEBHOOK_URLS": "ftp://x.example/h?token=s3cret",
                "GATEWAY_ALERT_WEBHOOK_SECRET": "s",
            }
        )
    assert "s3cret" not in str(refused.value)
    settings = Settings.from_env(
        {
            "GATEWAY_ALERT_WEBHOOK_URLS": " https://a/h , http://b/h ",
            "GATEWAY_ALERT_WEBHOOK_SECRET": "s",
        }
    )
    assert settings.alert_webhook_urls == ("https://a/h", "http://b/h")
    assert "https://a/h" not in repr(settings)
