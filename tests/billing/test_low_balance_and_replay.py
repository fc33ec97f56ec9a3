"""Low-balance signals, and ``gateway stripe replay`` for operators."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

import orjson
import pytest

from gateway.billing.autotopup import LOW_BALANCE_HEADER, crossed, low_balance_header
from gateway.billing.replay import add_cli, replay_direct, replay_http
from tests.billing.helpers import assert_balance_is_sum_of_entries, event, session
from tests.support.gateway import RunningGateway, usd
from tests.support.waiting import wait_until

WARN, CRITICAL = usd("1.00"), usd("0.10")


def test_crossing_reports_the_most_severe_threshold_once() -> None:
    assert crossed(WARN, CRITICAL, usd("1.00"), usd("0.99")) == ("warning", WARN)
    assert crossed(WARN, CRITICAL, usd("0.50"), usd("0.09")) == ("critical", CRITICAL)
    assert crossed(WARN, CRITICAL, usd("5.00"), usd("0.05")) == ("critical", CRITICAL)
    # Already below: no repeat on every call; going up is never a crossing.
    assert crossed(WARN, CRITICAL, usd("0.99"), usd("0.98")) is None
    assert crossed(WARN, CRITICAL, usd("0.05"), usd("5.00")) is None
    assert low_balance_header("warning", usd("0.99"), WARN) == (
        LOW_BALANCE_HEADER,
        b"warning; balance=0.99; threshold=1.00",
    )


def test_call_that_crosses_a_threshold_logs_a_structured_event(
    bgw: RunningGateway,
    caplog: pytest.LogCaptureFixture,
) -> None:
    uid, key = bgw.user("1.00")
    caplog.set_level(logging.WARNING, logger="gateway.billing")
    raw = bgw.client(key).chat.completions.with_raw_response.create(
        model="chat", messages=[{"role": "user", "content": "hi"}], max_tokens=5
    )

    def logged() -> list[logging.LogRecord]:
        return [r for r in caplog.records if getattr(r, "event", None) == "low_balance"]

    wait_until(logged, bool, wanted="a low_balance log record")
    [record] = logged()
    balance = raw.headers["x-gateway-low-balance"].split("balance=")[1].split(";")[0]
    # The line itself is the event, whatever prints it: one JSON object with the README's fields.
    assert orjson.loads(record.getMessage()) == {
        "event": "low_balance",
        "user_id": uid,
        "level": "warning",
        "balance": balance,
        "threshold": "1.00",
        "request_id": raw.headers["x-request-id"],
    }
    assert (record.user_id, record.level, record.threshold) == (uid, "warning", "1.00")  # type: ignore[attr-defined]


def test_non_stream_call_that_crosses_carries_the_header(bgw: RunningGateway) -> None:
    _, key = bgw.user("1.00")
    raw = bgw.client(key).chat.completions.with_raw_response.create(
        model="chat", messages=[{"role": "user", "content": "hi"}], max_tokens=5
    )
    assert raw.headers["x-gateway-low-balance"].startswith("warning; balance=0.99")
    again = bgw.client(key).chat.completions.with_raw_response.create(
        model="chat", messages=[{"role": "user", "content": "hi"}], max_tokens=5
    )
    assert "x-gateway-low-balance" not in again.headers


def saved_event(tmp_path: Path, uid: str, event_id: str = "evt_saved") -> Path:
    path = tmp_path / f"{event_id}.json"
    path.write_bytes(
        orjson.dumps(
            event(event_id, "checkout.session.completed", session(uid, session_id=f"cs_{event_id}"))
        )
    )
    return path


def same_answer(duplicate: dict[str, object], first: dict[str, object]) -> bool:
    """Whether a duplicate's answer says what the first one did (the stored row adds the
    times the first answer was given before)."""
    times = ("created_at", "updated_at", "duplicate")
    return {k: v for k, v in duplicate.items() if k not in times} == {
        k: v for k, v in first.items() if k not in times
    }


def test_replay_through_the_running_gateway_credits_once(
    bgw: RunningGateway,
    tmp_path: Path,
) -> None:
    uid, _ = bgw.user("0")
    payload = saved_event(tmp_path, uid).read_bytes()
    first = asyncio.run(replay_http(bgw.settings, payload, url=bgw.base_url))
    again = asyncio.run(replay_http(bgw.settings, payload, url=bgw.base_url))
    assert (first["status"], first["duplicate"]) == ("credited", False)
    assert (again["status"], again["duplicate"]) == ("credited", True)
    # The same answer as the first time (the README's promise), not nulls.
    assert same_answer(again, first)
    assert (again["user_id"], again["amount"], again["currency"]) == (uid, "10.00", "usd")
    assert bgw.balance(uid) == usd("10.00")


def test_replay_cli_direct_credits_an_unmatched_event_after_the_user_exists(
    bgw: RunningGateway,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = saved_event(tmp_path, "late-user", "evt_direct")
    asyncio.run(replay_http(bgw.settings, path.read_bytes(), url=bgw.base_url))
    bgw.user("0", user_id="late-user")
    bgw.stop()  # the operator recovers with the gateway down

    parser = argparse.ArgumentParser(prog="gateway")
    add_cli(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["stripe", "replay", str(path), "--direct"])
    args.run(args, bgw.settings)
    printed = orjson.loads(capsys.readouterr().out)
    assert (printed["status"], printed["user_id"], printed["amount"]) == (
        "credited",
        "late-user",
        "10.00",
    )
    assert_balance_is_sum_of_entries(bgw, "late-user")
    again = asyncio.run(replay_direct(bgw.settings, path.read_bytes()))
    assert again["duplicate"] is True


def test_replay_prints_the_same_answer_through_the_gateway_and_direct(
    bgw: RunningGateway,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    uid, _ = bgw.user("0")
    path = saved_event(tmp_path, uid, "evt_both_forms")
    parser = argparse.ArgumentParser(prog="gateway")
    add_cli(parser.add_subparsers(dest="command"))

    def replay(*flags: str) -> dict[str, object]:
        args = parser.parse_args(["stripe", "replay", str(path), *flags])
        args.run(args, bgw.settings)
        printed: dict[str, object] = orjson.loads(capsys.readouterr().out)
        return printed

    via_api = replay("--url", bgw.base_url)
    direct = replay("--direct")  # the same event again: a duplicate, moving nothing
    assert set(direct) == set(via_api)
    assert (via_api["received"], via_api["id"], via_api["status"]) == (
        True,
        "evt_both_forms",
        "credited",
    )
    assert (via_api["user_id"], via_api["amount"], via_api["duplicate"]) == (uid, "10.00", False)
    assert (direct["id"], direct["status"], direct["duplicate"]) == (
        "evt_both_forms",
        "credited",
        True,
    )
    assert same_answer(direct, via_api)
    assert bgw.balance(uid) == usd("10.00")
