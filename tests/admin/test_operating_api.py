"""The operator's daily work over HTTP, end to end in embedded mode: balances, bulk credits,
audit, usage pages, stats, reports and price reloads, against a real gateway and real calls."""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict
from decimal import Decimal
from typing import Any

import httpx
import pytest

from gateway.ledger import open_ledger
from gateway.records import Entry
from tests.support.gateway import RunningGateway, usd

PROMPT = [{"role": "user", "content": "one two three"}]  # 3 prompt tokens, 5 completion tokens


def call(gw: RunningGateway, key: str, model: str = "chat", **kw: Any) -> None:
    gw.client(key).chat.completions.create(model=model, messages=PROMPT, **kw)


def entries(gw: RunningGateway, user_id: str) -> list[Entry]:
    async def read() -> list[Entry]:
        ledger = await open_ledger(gw.settings.database_url)
        try:
            return await ledger.journal.list_entries(user_id)
        finally:
            await ledger.close()

    return asyncio.run(read())


def assert_books_balance(gw: RunningGateway, user_id: str) -> None:
    running = 0
    for entry in entries(gw, user_id):
        running += entry.amount
        assert entry.balance_after == running
    assert gw.balance(user_id) == running


def sums(rows: list[dict[str, Any]], money: str) -> dict[str, Any]:
    prompt = sum(r["prompt_tokens"] for r in rows)
    completion = sum(r["completion_tokens"] for r in rows)
    return {
        "requests": len(rows),
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "cached_tokens": sum(r["cached_tokens"] for r in rows),
        "reasoning_tokens": sum(r["reasoning_tokens"] for r in rows),
        "total_tokens": prompt + completion,
        money: sum((Decimal(r["cost"]) for r in rows), Decimal(0)),
    }


def only(view: dict[str, Any], money: str) -> dict[str, Any]:
    out = {
        k: view[k]
        for k in (
            "requests",
            "prompt_tokens",
            "completion_tokens",
            "cached_tokens",
            "reasoning_tokens",
            "total_tokens",
        )
    }
    out[money] = Decimal(view[money])
    return out


# -- balances and audit --------------------------------------------------------------------


def test_set_balance_writes_one_adjustment_and_applies_at_once(gw: RunningGateway) -> None:
    uid, key = gw.user("5.00")
    call(gw, key)
    gw.wait_usage(uid, 1)
    before = entries(gw, uid)
    r = gw.admin.put(f"/admin/users/{uid}/balance", json={"balance": "0.00001", "reason": "fix"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["user"]["balance"] == "0.00001"
    assert body["entry"]["kind"] == "adjustment"
    after = entries(gw, uid)
    assert len(after) == len(before) + 1
    assert after[-1].kind == "adjustment"
    assert_books_balance(gw, uid)
    # The store saw the new balance at once: a call costing more than $0.00001 is refused.
    with pytest.raises(Exception, match=r"402|insufficient"):
        call(gw, key)
    assert gw.admin.put(f"/admin/users/{uid}/balance", json={"balance": "-1"}).status_code == 422
    assert gw.admin.put("/admin/users/ghost/balance", json={"balance": "1"}).status_code == 404


def test_bulk_credits_answer_per_user(gw: RunningGateway) -> None:
    a, _ = gw.user("1.00")
    b, _ = gw.user("2.00")
    r = gw.admin.post(
        "/admin/credits/bulk",
        json={"user_ids": [a, "ghost", b], "amount": "0.50", "reason": "apology"},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["applied"], body["failed"], body["has_more"]) == (2, 1, False)
    assert [(x["user_id"], x["status"]) for x in body["data"]] == [
        (a, "applied"),
        ("ghost", "failed"),
        (b, "applied"),
    ]
    assert body["data"][1]["error"]["code"] == "user_not_found"
    assert gw.balance(a) == usd("1.50")
    assert gw.balance(b) == usd("2.50")
    bad = gw.admin.post("/admin/credits/bulk", json={"user_ids": [a], "amount": "NaN"})
    assert bad.status_code == 422
    assert gw.balance(a) == usd("1.50")
    for uid in (a, b):
        assert_books_balance(gw, uid)


def test_bulk_credit_with_a_reference_applies_once_over_http(gw: RunningGateway) -> None:
    a, _ = gw.user("1.00")
    b, _ = gw.user("2.00")
    body = {"user_ids": [a, b], "amount": "0.50", "reference": "apology-2026-11-30"}
    first = gw.admin.post("/admin/credits/bulk", json=body)
    again = gw.admin.post("/admin/credits/bulk", json=body)  # a retry after a lost answer
    assert (first.status_code, again.status_code) == (200, 200), again.text
    assert [r["duplicate"] for r in first.json()["data"]] == [False, False]
    assert [r["duplicate"] for r in again.json()["data"]] == [True, True]
    assert [r["entry"]["id"] for r in again.json()["data"]] == [
        r["entry"]["id"] for r in first.json()["data"]
    ]
    assert (gw.balance(a), gw.balance(b)) == (usd("1.50"), usd("2.50"))
    assert [e.reference for e in entries(gw, a)][-1] == f"admin:bulk:apology-2026-11-30/{a}"
    for bad in ("short", "with space", "x" * 101, 12345678, "trailing-newline\n"):
        refused = gw.admin.post("/admin/credits/bulk", json={**body, "reference": bad})
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["code"] == "invalid_reference"
    assert (gw.balance(a), gw.balance(b)) == (usd("1.50"), usd("2.50"))
    for uid in (a, b):
        assert len(entries(gw, uid)) == 2
        assert_books_balance(gw, uid)


def test_an_id_with_a_trailing_line_break_is_refused(gw: RunningGateway) -> None:
    # A regex ``$`` also matches before a final newline: "alice\n" would be a second "alice".
    refused = gw.admin.post("/admin/users", json={"id": "alice\n"})
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["code"] == "invalid_id"
    assert gw.admin.get("/admin/users/alice%0A").status_code == 404


def test_audit_trail_records_actor_action_target_amount_reason(gw: RunningGateway) -> None:
    uid, _ = gw.user("1.00")
    gw.admin.post(
        f"/admin/users/{uid}/credits",
        json={"amount": "2.00", "reason": "promo"},
        headers={"X-Gateway-Actor": "alice"},
    )
    gw.admin.put(f"/admin/users/{uid}/balance", json={"balance": "1.25", "reason": "typo"})
    mine = gw.admin.get("/admin/audit", params={"user": uid}).json()
    assert [e["action"] for e in mine["data"]] == [
        "balance.set",
        "credits.add",
        "key.create",
        "user.create",
    ]
    balance_set, credit = mine["data"][0], mine["data"][1]
    assert (credit["actor"], credit["target"], credit["amount"], credit["reason"]) == (
        "admin:alice",
        uid,
        "2.00",
        "promo",
    )
    assert (balance_set["amount"], balance_set["reason"]) == ("-1.75", "typo")
    assert balance_set["details"]["previous_balance"] == "3.00"
    only_sets = gw.admin.get("/admin/audit", params={"action": "balance.set"}).json()
    assert {e["target"] for e in only_sets["data"]} == {uid}
    page = gw.admin.get("/admin/audit", params={"user": uid, "limit": 2}).json()
    assert len(page["data"]) == 2
    assert page["has_more"] is True


# -- usage, stats, reports -----------------------------------------------------------------


def test_cursor_pages_over_http_neither_skip_nor_repeat_while_calls_land(
    gw: RunningGateway,
) -> None:
    uid, key = gw.user()
    for _ in range(11):
        call(gw, key)
    listed = [r["request_id"] for r in gw.wait_usage(uid, 11)]
    seen: list[str] = []
    params: dict[str, Any] = {"limit": 4}
    pages = 0
    while True:
        page = gw.admin.get(f"/admin/users/{uid}/usage", params=params).json()
        seen += [r["request_id"] for r in page["data"]]
        pages += 1
        call(gw, key)  # lands between pages
        gw.wait_usage(uid, 11 + pages)
        if not page["has_more"]:
            break
        params = {"limit": 4, "cursor": page["next_cursor"]}
    assert seen == listed
    row = gw.usage(uid)[0]
    assert set(row) >= {
        "model",
        "prompt_tokens",
        "completion_tokens",
        "cached_tokens",
        "reasoning_tokens",
        "price_per_1m_tokens",
        "cost",
        "status",
        "created_at",
    }


def test_stats_and_me_stats_equal_sums_of_usage_rows(gw: RunningGateway) -> None:
    uid, key = gw.user()
    other, other_key = gw.user()
    for model in ("chat", "chat", "cheap", "chat"):
        call(gw, key, model=model)
    call(gw, other_key, model="cheap")
    gw.client(key).chat.completions.create(
        model="chat",
        messages=[
            {"role": "user", "content": "one two three [[mock:cached=2]] [[mock:reasoning=3]]"}
        ],
    )
    rows = gw.wait_usage(uid, 5)
    gw.wait_usage(other, 1)
    stats = gw.admin.get(f"/admin/users/{uid}/stats").json()
    assert only(stats, "cost") == sums(rows, "cost")
    assert stats["cached_tokens"] == 2
    assert stats["reasoning_tokens"] == 3
    by_model: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_model[r["model"]].append(r)
    assert {m["model"]: only(m, "cost") for m in stats["models"]} == {
        k: sums(v, "cost") for k, v in by_model.items()
    }
    total = Decimal(stats["cost"])
    assert Decimal(stats["average_cost"]) == (total / 5).quantize(Decimal("1e-9"))
    me = httpx.get(f"{gw.base_url}/me/stats", headers={"Authorization": f"Bearer {key}"})
    assert me.status_code == 200
    assert me.json() == stats
    my_usage = httpx.get(
        f"{gw.base_url}/me/usage", params={"limit": 2}, headers={"Authorization": f"Bearer {key}"}
    ).json()
    assert [r["request_id"] for r in my_usage["data"]] == [r["request_id"] for r in rows[:2]]
    assert my_usage["has_more"] is True
    assert my_usage["next_cursor"]
    assert gw.admin.get("/admin/users/ghost/stats").status_code == 404


def test_reports_equal_sums_of_usage_rows(gw: RunningGateway) -> None:
    users = [gw.user() for _ in range(3)]
    for i, (_, key) in enumerate(users):
        for _ in range(i + 1):
            call(gw, key, model="chat")
        call(gw, key, model="cheap")
    rows: list[dict[str, Any]] = []
    for i, (uid, _) in enumerate(users):
        rows += gw.wait_usage(uid, i + 2)
    revenue = gw.admin.get("/admin/reports/revenue", params={"tz": "Asia/Tokyo"}).json()
    assert len(revenue["data"]) == 30
    assert revenue["has_more"] is False
    assert only(revenue["total"], "revenue") == sums(rows, "revenue")
    assert sum(d["requests"] for d in revenue["data"]) == len(rows)
    models = gw.admin.get("/admin/reports/models").json()
    assert [m["id"] for m in models["data"]] == ["mock:chat", "mock:cheap"]
    assert only(models["data"][0], "revenue") == sums(
        [r for r in rows if r["model"] == "chat"], "revenue"
    )
    top = gw.admin.get("/admin/reports/top-users", params={"limit": 2}).json()
    assert [u["user_id"] for u in top["data"]] == [users[2][0], users[1][0]]
    assert top["has_more"] is True
    assert only(top["data"][0], "revenue") == sums(
        [r for r in rows if r["request_id"] in {x["request_id"] for x in gw.usage(users[2][0])}],
        "revenue",
    )


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/admin/reports/revenue", {"tz": "Nowhere/Land"}),
        ("/admin/reports/revenue", {"from": "2024-02-30"}),
        ("/admin/reports/models", {"to": "soon"}),
        ("/admin/reports/top-users", {"limit": "100000"}),
        ("/admin/users/{uid}/usage", {"cursor": "garbage"}),
        ("/admin/users/{uid}/stats", {"from": "2024-05-02", "to": "2024-05-01"}),
    ],
)
def test_bad_parameters_are_400_in_openai_shape(
    gw: RunningGateway, path: str, params: dict[str, str]
) -> None:
    uid, _ = gw.user()
    r = gw.admin.get(path.format(uid=uid), params=params)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"]
    assert error["param"]


# -- prices --------------------------------------------------------------------------------


def test_bad_price_file_changes_nothing_and_new_price_applies_to_next_call(
    gw: RunningGateway, gateways: Any
) -> None:
    uid, key = gw.user()
    models_file = gateways.models_file()
    good = models_file.read_text()
    before = gw.admin.get("/admin/models").json()
    call(gw, key)
    models_file.write_text(good.replace('output: "10.00"', "output: 12.00"))  # unquoted: refused
    r = gw.admin.post("/admin/models/reload", json={"reason": "oops"})
    assert r.status_code == 422, r.text
    assert "price must be a quoted decimal string" in r.json()["error"]["message"]
    assert "models.yaml:" in r.json()["error"]["message"]
    assert gw.admin.get("/admin/models").json() == before
    call(gw, key)
    rows = gw.wait_usage(uid, 2)
    assert {r["price_per_1m_tokens"]["output"] for r in rows} == {"10.00"}
    assert {r["cost"] for r in rows} == {"0.0000575"}

    models_file.write_text(good.replace('output: "10.00"', 'output: "20.00"'))
    r = gw.admin.post("/admin/models/reload", json={"reason": "new list price"})
    assert r.status_code == 200, r.text
    assert [c["model"] for c in r.json()["changes"]] == ["chat"]
    chat = next(m for m in gw.admin.get("/admin/models").json()["data"] if m["id"] == "chat")
    assert chat["price_per_1m_tokens"]["output"] == "20.00"
    call(gw, key)
    rows = gw.wait_usage(uid, 3)
    assert rows[0]["price_per_1m_tokens"]["output"] == "20.00"
    assert rows[0]["cost"] == "0.0001075"  # 3 x 2.50 + 5 x 20.00 per 1M
    assert [r["cost"] for r in rows[1:]] == ["0.0000575", "0.0000575"]  # history kept
    audit = gw.admin.get(
        "/admin/audit", params={"target": "chat", "action": "price.change"}
    ).json()["data"]
    assert len(audit) == 1
    assert audit[0]["reason"] == "new list price"
    assert audit[0]["details"]["old"]["price_per_1m_tokens"]["output"] == "10.00"
    assert audit[0]["details"]["new"]["price_per_1m_tokens"]["output"] == "20.00"
    failed = gw.admin.get("/admin/audit", params={"action": "models.reload_failed"}).json()
    assert len(failed["data"]) == 1
    assert "quoted decimal" in failed["data"][0]["details"]["error"]


def test_concurrent_reloads_leave_one_price_book(gw: RunningGateway) -> None:
    results: list[int] = []

    def reload() -> None:
        results.append(gw.admin.post("/admin/models/reload").status_code)

    threads = [threading.Thread(target=reload) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * 4
    sets = gw.admin.get("/admin/audit", params={"action": "price.set", "limit": 100}).json()
    assert sorted(e["target"] for e in sets["data"]) == ["chat", "cheap", "embed", "nowhere"]
