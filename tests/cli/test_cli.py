"""The `gateway` CLI against a real embedded gateway: every read command gives the same answer
through the admin API and --direct; writes land in the ledger; tables are readable."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway import cli
from gateway.actions import ACTIONS
from gateway.cli.commands import build_parser
from gateway.cli.tables import COLUMNS
from tests.support.gateway import ADMIN_KEY, RunningGateway, usd

PROMPT = [{"role": "user", "content": "one two three"}]


@pytest.fixture
def env(gw: RunningGateway, gateways: Any, monkeypatch: pytest.MonkeyPatch) -> RunningGateway:
    monkeypatch.setenv("GATEWAY_DATABASE_URL", gw.settings.database_url)
    monkeypatch.setenv("GATEWAY_ADMIN_KEY", ADMIN_KEY)
    monkeypatch.setenv("GATEWAY_URL", gw.base_url)
    monkeypatch.setenv("GATEWAY_MODELS", str(gateways.models_file()))
    monkeypatch.delenv("GATEWAY_REDIS_URL", raising=False)
    return gw


def gateway(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    cli.main(list(argv))
    return capsys.readouterr().out


def as_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    return orjson.loads(gateway(capsys, *argv, "--json"))


def failure(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as exited:
        cli.main(list(argv))
    capsys.readouterr()
    return str(exited.value.code)


def traffic(gw: RunningGateway) -> tuple[str, str]:
    a, key_a = gw.user("5.00")
    b, key_b = gw.user("5.00")
    for model, key in (("chat", key_a), ("cheap", key_a), ("chat", key_b), ("chat", key_a)):
        gw.client(key).chat.completions.create(model=model, messages=PROMPT)
    gw.wait_usage(a, 3)
    gw.wait_usage(b, 1)
    return a, b


def test_every_read_command_answers_the_same_through_api_and_direct(
    env: RunningGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = traffic(env)
    env.admin.post(f"/admin/users/{b}/credits", json={"amount": "1.00", "reason": "promo"})
    commands = [
        ("users", "show", a),
        ("balance", b),
        ("keys", "list", a),
        ("usage", a, "--limit", "2"),
        ("usage", b),
        ("stats", a),
        ("stats", a, "--from", "2020-01-01", "--tz", "Europe/Paris"),
        ("report", "revenue", "--tz", "America/New_York"),
        ("report", "models"),
        ("report", "top-users", "--limit", "1"),
        ("audit", "--user", b),
        ("audit", "--action", "credits.add", "--limit", "1"),
        ("models", "list"),
    ]
    for command in commands:
        via_api = as_json(capsys, *command)
        direct = as_json(capsys, *command, "--direct")
        assert via_api == direct, command
    page = as_json(capsys, "usage", a, "--limit", "2")
    rest = as_json(capsys, "usage", a, "--limit", "2", "--cursor", page["next_cursor"], "--direct")
    assert len(page["data"]) + len(rest["data"]) == 3 and rest["has_more"] is False
    stats = as_json(capsys, "stats", a)
    assert stats["requests"] == 3
    assert Decimal(stats["cost"]) == sum(Decimal(r["cost"]) for r in env.usage(a))


def test_errors_are_the_same_in_both_modes(
    env: RunningGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    for command in (
        ("report", "revenue", "--tz", "Mars/Base"),
        ("stats", "ghost"),
        ("usage", "ghost"),
        ("report", "top-users", "--from", "tomorrow"),
    ):
        via_api = failure(capsys, *command)
        assert via_api.startswith("gateway: ")
        assert failure(capsys, *command, "--direct") == via_api, command


def test_credit_commands_move_money_and_print_tables(
    env: RunningGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    uid, _ = env.user("1.00")
    out = gateway(capsys, "credits", "add", uid, "2.50", "--reason", "promo")
    assert "user.balance" in out and "3.50" in out
    assert env.balance(uid) == usd("3.50")
    moved = as_json(capsys, "credits", "set", uid, "0.75", "--reason", "fix")
    assert (moved["entry"]["kind"], moved["entry"]["amount"]) == ("adjustment", "-2.75")
    assert env.balance(uid) == usd("0.75")
    with pytest.raises(SystemExit) as exited:
        cli.main(["credits", "bulk", "1.00", uid, "ghost", "--reason", "gift"])
    assert exited.value.code == "gateway: 1 of 2 users failed: ghost (user_not_found)"
    lines = capsys.readouterr().out.splitlines()
    assert [line.split() for line in lines[:2]] == [["applied", "1"], ["failed", "1"]]
    assert lines[2].split() == ["user", "status", "duplicate", "balance", "reserved", "error"]
    assert lines[4].split()[:5] == [uid, "applied", "False", "1.75", "0.00"]
    assert lines[5].split()[:2] == ["ghost", "failed"]
    audit = as_json(capsys, "audit", "--user", uid)
    assert [e["action"] for e in audit["data"][:3]] == ["credits.add", "balance.set", "credits.add"]
    assert all(e["actor"].startswith("admin:") for e in audit["data"][:3])


def test_bulk_credit_with_a_reference_applies_once_through_api_and_direct(
    env: RunningGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    uid, _ = env.user("1.00")
    command = ("credits", "bulk", "2.00", uid, "--reference", "gift-2026-11-30")
    first = as_json(capsys, *command)
    again = as_json(capsys, *command, "--direct")  # the same bulk, the other way
    assert [(r["status"], r["duplicate"]) for r in first["data"]] == [("applied", False)]
    assert [(r["status"], r["duplicate"]) for r in again["data"]] == [("applied", True)]
    assert again["data"][0]["entry"] == first["data"][0]["entry"]
    assert env.balance(uid) == usd("3.00")
    assert failure(capsys, *command[:-1], "bad ref") == (
        "gateway: reference must be 8 to 100 letters, digits or _.:-"
    )
    assert env.balance(uid) == usd("3.00")


def test_direct_writes_land_in_the_ledger(
    env: RunningGateway,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A database no gateway serves: --direct is the way to reach it.
    monkeypatch.setenv("GATEWAY_DATABASE_URL", f"sqlite:///{tmp_path}/offline.db")
    created = as_json(capsys, "users", "create", "--id", "zoe", "--credit", "2.00", "--direct")
    assert created["balance"] == "2.00"
    as_json(capsys, "credits", "set", "zoe", "5.00", "--direct")
    with pytest.raises(SystemExit) as exited:
        cli.main(["credits", "bulk", "1.00", "zoe", "nobody", "--direct", "--json"])
    assert exited.value.code == "gateway: 1 of 2 users failed: nobody (user_not_found)"
    bulk = orjson.loads(capsys.readouterr().out)  # the whole answer, for scripts
    assert (bulk["applied"], bulk["failed"]) == (1, 1)
    whole = as_json(capsys, "credits", "bulk", "1.00", "zoe", "--direct")  # all applied: exit 0
    assert (whole["applied"], whole["failed"]) == (1, 0)
    assert as_json(capsys, "balance", "zoe", "--direct")["balance"] == "7.00"
    audit = as_json(capsys, "audit", "--user", "zoe", "--direct")
    assert [e["action"] for e in audit["data"]] == [
        "credits.add",
        "credits.add",
        "balance.set",
        "user.create",
    ]
    assert all(e["actor"].startswith("cli:") for e in audit["data"])


def test_report_tables_are_readable(
    env: RunningGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    a, _ = traffic(env)
    revenue = gateway(capsys, "report", "revenue", "--tz", "Europe/Paris").splitlines()
    assert revenue[0].split()[:2] == ["tz", "Europe/Paris"]
    header = next(i for i, line in enumerate(revenue) if line.startswith("day"))
    assert revenue[header].split() == [
        "day",
        "requests",
        "prompt",
        "cached",
        "completion",
        "reasoning",
        "tokens",
        "revenue",
    ]
    assert revenue[-1].split()[:2] == ["total", "4"]
    usage = gateway(capsys, "usage", a, "--limit", "2").splitlines()
    assert usage[0].split()[:4] == ["time", "request", "model", "status"]
    assert len(usage) == 5 and usage[-1].startswith("(more: --cursor ")
    top = gateway(capsys, "report", "top-users").splitlines()
    assert top[0].split()[0] == "user"
    assert top[2].split()[0] == a and top[-1].split()[0] == "total"
    models = gateway(capsys, "models", "list").splitlines()
    assert models[0].split()[:3] == ["model", "provider", "kind"]


def test_models_reload_through_the_api_and_refused_direct(
    env: RunningGateway, gateways: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    models_file = gateways.models_file()
    models_file.write_text(models_file.read_text().replace('input: "0.10"', 'input: "0.20"'))
    out = gateway(capsys, "models", "reload", "--reason", "list price")
    assert "cheap" in out and "price.change" in out
    assert "SIGHUP" in failure(capsys, "models", "reload", "--direct")
    assert as_json(capsys, "models", "list") == as_json(capsys, "models", "list", "--direct")
    models_file.write_text("models: [")
    assert "not valid YAML" in failure(capsys, "models", "reload")
    assert "0.20" in gateway(capsys, "models", "list")
    assert "models.yaml:1: not valid YAML" in failure(capsys, "models", "check")


def commands(parser: argparse.ArgumentParser, prefix: str = "") -> dict[str, str]:
    """Every command line (e.g. "credits add") that runs an action, and that action's name."""
    found: dict[str, str] = {}
    for option in parser._actions:
        if isinstance(option, argparse._SubParsersAction):
            for name, sub in option.choices.items():
                action = sub.get_default("op_action")
                if action is not None:
                    found[f"{prefix}{name}"] = action
                found.update(commands(sub, f"{prefix}{name} "))
    return found


def test_every_action_is_a_command_and_every_table_belongs_to_an_action() -> None:
    assert set(commands(build_parser()).values()) == set(ACTIONS)
    assert set(COLUMNS) <= set(ACTIONS)


def test_a_users_ledger_entries_add_up_to_its_balance_in_both_modes(
    env: RunningGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    # Newcomer trial of issue 13: balance == sum of entries could only be checked in SQL.
    a, _ = traffic(env)
    env.admin.post(f"/admin/users/{a}/credits", json={"amount": "1.50", "reason": "promo"})
    every = as_json(capsys, "entries", a)
    assert every == as_json(capsys, "entries", a, "--direct")
    assert [e["version"] for e in every["data"]] == list(range(1, 6))  # grant, 3 calls, credit
    assert [e["kind"] for e in every["data"]] == ["grant", "usage", "usage", "usage", "grant"]
    total = sum(Decimal(e["amount"]) for e in every["data"])
    assert usd(str(total)) == env.balance(a) == usd(every["data"][-1]["balance_after"])
    first = as_json(capsys, "entries", a, "--limit", "2")
    rest = as_json(capsys, "entries", a, "--after", str(first["next_after"]))
    assert (first["has_more"], rest["has_more"]) == (True, False)
    assert first["data"] + rest["data"] == every["data"]
    assert "balance" in gateway(capsys, "entries", a)  # the text table
    bad = env.admin.get(f"/admin/users/{a}/entries", params={"limit": "0"})
    assert (bad.status_code, bad.json()["error"]["param"]) == (400, "limit")
    assert failure(capsys, "entries", "ghost").startswith("gateway: ")


def test_usage_prune_answers_the_same_through_api_and_direct(
    env: RunningGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    traffic(env)  # this month's rows: inside any window
    argv = ("usage", "prune", "--keep-months", "1", "--dry-run")
    via_api = as_json(capsys, *argv)
    assert via_api == as_json(capsys, *argv, "--direct")
    assert (via_api["object"], via_api["dry_run"], via_api["months"]) == (
        "usage.retention",
        True,
        [],
    )
    assert failure(capsys, "usage", "prune", "--keep-months", "0") == failure(
        capsys, "usage", "prune", "--keep-months", "0", "--direct"
    )
    done = as_json(capsys, "usage", "prune", "--keep-months", "1")
    assert (done["dry_run"], done["months"]) == (False, [])
    audit = as_json(capsys, "audit", "--action", "usage.prune")
    assert [e["details"]["keep_months"] for e in audit["data"]] == [1]


def test_direct_without_a_database_says_so_and_creates_none(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "users", "list", "--direct"],
        env={k: v for k, v in os.environ.items() if k != "GATEWAY_DATABASE_URL"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr == (
        "gateway: --direct: no database at ./gateway.db; set GATEWAY_DATABASE_URL to the"
        " gateway's (or run from its directory)\n"
    )
    assert list(tmp_path.iterdir()) == []
