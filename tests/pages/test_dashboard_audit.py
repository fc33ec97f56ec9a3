"""The dashboard's audit log: the action filter offers every action the code writes, each
target links to the page that shows it, a change says what it set (API, CLI and dashboard
alike), and details stay short lines instead of a column of JSON."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.dashboard.audit import ACTIONS, detail_lines, target_link
from tests.pages.browsing import browser_client, csrf_of, operator
from tests.support.gateway import GatewayFactory, RunningGateway

GATEWAY = Path(__file__).resolve().parents[2] / "gateway"
ACTION_NAME = re.compile(r"^[a-z_]+\.[a-z_]+$")


@pytest.fixture
def dash(gw: RunningGateway) -> Iterator[httpx.Client]:
    with browser_client(gw) as client:
        yield operator(client)


def written_actions() -> set[str]:
    """Every ``action`` an ``AuditEvent(...)`` in gateway/ is built with: the literal, or
    for a variable the action-like literals of the function that builds it."""
    found: set[str] = set()
    for path in GATEWAY.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for func in ast.walk(tree):
            if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for call in ast.walk(func):
                if not (
                    isinstance(call, ast.Call) and getattr(call.func, "id", "") == "AuditEvent"
                ):
                    continue
                [action] = [k.value for k in call.keywords if k.arg == "action"]
                if isinstance(action, ast.Constant):
                    found.add(action.value)
                else:
                    found |= {
                        c.value
                        for c in ast.walk(func)
                        if isinstance(c, ast.Constant)
                        and isinstance(c.value, str)
                        and ACTION_NAME.match(c.value)
                    }
    return found


def test_the_filter_offers_every_action_the_audit_trail_writes() -> None:
    written = written_actions()
    assert {"price.set", "price.change", "password.change", "invite.create"} <= written
    assert written - set(ACTIONS) == set()


def test_each_target_links_to_its_own_page() -> None:
    assert target_link("price.set", "gpt-4o") == "/dashboard/prices"
    assert target_link("models.reload", "models.yaml") == "/dashboard/prices"
    assert target_link("credits.add", "a b") == "/dashboard/users/a%20b"
    assert target_link("invite.create", "inv_1") is None
    assert target_link("credits.bulk", None) is None


def test_details_are_short_lines_and_a_price_change_shows_only_what_changed() -> None:
    old = {"id": "m", "price_per_1m_tokens": {"input": "0.10", "output": "0.40"}}
    new = {"id": "m", "price_per_1m_tokens": {"input": "0.20", "output": "0.40"}}
    assert detail_lines({"old": old, "new": new}) == ["price_per_1m_tokens.input: 0.10 → 0.20"]
    assert detail_lines({"fields": ["disabled"], "new": {"disabled": True}}) == [
        "disabled=true",
        'fields=["disabled"]',
    ]
    assert detail_lines({"old": old, "new": None})[0] == "id: m → none"
    assert detail_lines(None) == []


def test_disabling_a_user_is_logged_with_the_new_value_from_every_door(
    gw: RunningGateway, dash: httpx.Client
) -> None:
    gw.user("1.00", user_id="alice")
    token = csrf_of(dash.get("/dashboard/users/alice").text)
    r = dash.post(
        "/dashboard/users/alice/status",
        data={"csrf_token": token, "disabled": "true", "confirm": "yes"},
    )
    assert r.status_code == 303
    r = gw.admin.patch("/admin/users/alice", json={"disabled": False, "limits": {"rpm": 30}})
    assert r.status_code == 200, r.text
    events = gw.admin.get("/admin/audit", params={"action": "user.update"}).json()["data"]
    api, page = events  # newest first
    assert page["actor"] == "admin:dashboard"
    assert page["details"]["new"] == {"disabled": True}
    assert api["details"]["new"]["disabled"] is False
    assert api["details"]["new"]["limits"]["rpm"] == 30
    shown = dash.get("/dashboard/audit", params={"action": "user.update"}).text
    assert "disabled=true" in shown
    assert "disabled=false" in shown


def test_price_events_link_to_the_prices_page(
    gw: RunningGateway, gateways: GatewayFactory, dash: httpx.Client
) -> None:
    path = gateways.models_file()
    path.write_text(path.read_text().replace('input: "0.10"', 'input: "0.20"'))
    assert gw.admin.post("/admin/models/reload", json={}).status_code == 200
    shown = dash.get("/dashboard/audit", params={"action": "price.change"}).text
    assert '<a href="/dashboard/prices">cheap</a>' in shown
    assert "/dashboard/users/cheap" not in shown
    assert "price_per_1m_tokens.input: 0.10 → 0.20" in shown
    assert '<option value="price.change" selected>' in shown
