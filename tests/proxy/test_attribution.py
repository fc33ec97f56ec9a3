"""Attribution end to end, in embedded and production mode: the openai SDK's ``user``,
``safety_identifier``, ``metadata`` and ``extra_headers`` reach the usage record, the stats,
the reports and the exports (httpx for the admin and /me APIs); a bad value is a 400 in
OpenAI's shape that reserves and charges nothing."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

import openai
import orjson
import pytest

from gateway.exports import CSV_COLUMNS
from tests.support.gateway import GatewayFactory, RunningGateway

PROMPT = [{"role": "user", "content": "one two three"}]


@pytest.fixture(params=["embedded", pytest.param("production", marks=pytest.mark.production)])
def gw(request: pytest.FixtureRequest, gateways: GatewayFactory) -> Iterator[RunningGateway]:
    env: dict[str, str] = {}
    if request.param == "production":
        env = {
            "GATEWAY_DATABASE_URL": request.getfixturevalue("pg_dsn"),
            "GATEWAY_REDIS_URL": request.getfixturevalue("redis_url"),
        }
    running = gateways.start(**env)
    yield running
    running.stop()  # before its PostgreSQL database is dropped


def traffic(gw: RunningGateway) -> tuple[str, str, dict[str, dict[str, Any]]]:
    """Four calls of one user, attributed four ways; their usage rows by request id."""
    uid, key = gw.user("5.00")
    client = gw.client(key)
    ids = {}
    r = client.chat.completions.with_raw_response.create(
        model="chat",
        messages=PROMPT,
        user="end-user-1",
        metadata={"tags": "team:search, env=prod", "other": "not a tag"},
        extra_headers={"x-gateway-tags": "batch,team:search", "x-gateway-session-id": "conv-1"},
    )
    ids["tagged"] = r.headers["x-request-id"]
    stream = client.chat.completions.with_raw_response.create(
        model="chat",
        messages=PROMPT,
        stream=True,
        safety_identifier="hashed-42",
        user="ignored-when-safety-identifier",
        extra_headers={"x-gateway-session-id": "conv-1"},
    )
    ids["streamed"] = stream.headers["x-request-id"]
    for _ in stream.parse():
        pass
    r = client.embeddings.with_raw_response.create(
        model="embed", input="hello", extra_headers={"x-gateway-tags": "batch"}
    )
    ids["embedded"] = r.headers["x-request-id"]
    r = client.chat.completions.with_raw_response.create(model="cheap", messages=PROMPT)
    ids["plain"] = r.headers["x-request-id"]
    rows = {row["request_id"]: row for row in gw.wait_usage(uid, 4)}
    return uid, key, {name: rows[rid] for name, rid in ids.items()}


def test_attribution_reaches_usage_stats_reports_and_exports(gw: RunningGateway) -> None:
    uid, key, rows = traffic(gw)
    seen = {name: (r["end_user"], r["tags"], r["session_id"]) for name, r in rows.items()}
    assert seen == {
        "tagged": ("end-user-1", ["batch", "team:search", "env=prod"], "conv-1"),
        "streamed": ("hashed-42", [], "conv-1"),
        "embedded": (None, ["batch"], None),
        "plain": (None, [], None),
    }
    for r in rows.values():
        assert r["total_tokens"] == r["prompt_tokens"] + r["completion_tokens"] > 0

    me = {"Authorization": f"Bearer {key}"}
    by_tag = gw.admin.get("/me/stats", params={"group_by": "tag"}, headers=me).json()
    tags = {g["tag"]: g["requests"] for g in by_tag["groups"]}
    assert tags == {"batch": 2, "team:search": 1, "env=prod": 1, None: 2}
    assert by_tag["requests"] == 4
    by_session = gw.admin.get(f"/admin/users/{uid}/stats", params={"group_by": "session"}).json()
    assert {g["session_id"]: g["requests"] for g in by_session["groups"]} == {"conv-1": 2, None: 2}
    report = gw.admin.get(
        "/admin/reports/usage", params={"group_by": "end_user", "user": uid}
    ).json()
    assert {g["end_user"]: g["requests"] for g in report["data"]} == {
        "end-user-1": 1,
        "hashed-42": 1,
        None: 2,
    }
    by_key = gw.admin.get("/admin/reports/usage", params={"group_by": "key"}).json()
    assert [g["requests"] for g in by_key["data"]] == [4]

    with gw.admin.stream(
        "GET", "/admin/usage/export", params={"format": "jsonl", "user": uid}
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/x-ndjson")
        lines = [orjson.loads(line) for line in response.iter_lines() if line]
    assert {line["request_id"]: line for line in lines} == {
        r["request_id"]: {"user_id": uid, **r} for r in rows.values()
    }
    mine = gw.admin.get("/me/usage/export", params={"format": "csv"}, headers=me)
    assert mine.status_code == 200
    assert mine.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(mine.text)))
    assert tuple(table[0]) == CSV_COLUMNS
    by_id = {row["request_id"]: row for row in table}
    tagged = by_id[rows["tagged"]["request_id"]]
    assert tagged["tags"] == "batch,team:search,env=prod"
    assert (tagged["end_user"], tagged["session_id"]) == ("end-user-1", "conv-1")
    assert tagged["cost"] == rows["tagged"]["cost"]
    assert by_id[rows["plain"]["request_id"]]["end_user"] == ""
    created = sorted(r["created_at"] for r in rows.values())
    assert [row["created_at"] for row in table] == created  # oldest first


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"extra_headers": {"x-gateway-tags": "ok,not ok"}}, "x-gateway-tags"),
        (
            {"extra_headers": {"x-gateway-tags": ",".join(f"t{i}" for i in range(11))}},
            "x-gateway-tags",
        ),
        ({"extra_headers": {"x-gateway-tags": "x" * 65}}, "x-gateway-tags"),
        ({"extra_headers": {"x-gateway-session-id": "s" * 129}}, "x-gateway-session-id"),
        ({"extra_headers": {"x-gateway-session-id": "a b"}}, "x-gateway-session-id"),
        ({"metadata": {"tags": "semi;colon"}}, "metadata.tags"),
        ({"extra_body": {"metadata": {"tags": ["a"]}}}, "metadata.tags"),
        ({"user": "u" * 257}, "user"),
        ({"extra_body": {"user": 7}}, "user"),
        ({"safety_identifier": "line\nbreak"}, "safety_identifier"),
    ],
)
def test_bad_attribution_is_400_and_charges_nothing(
    gw: RunningGateway, kwargs: dict[str, Any], param: str
) -> None:
    uid, key = gw.user("5.00")
    with pytest.raises(openai.BadRequestError) as caught:
        gw.client(key).chat.completions.create(model="chat", messages=PROMPT, **kwargs)
    error = caught.value.body
    assert isinstance(error, dict)
    assert (error["code"], error["param"], error["type"]) == (
        "invalid_value",
        param,
        "invalid_request_error",
    )
    assert gw.balance(uid) == 5 * 10**9
    assert gw.usage(uid) == []


def test_export_parameters_are_checked_before_streaming(gw: RunningGateway) -> None:
    for params, param in (
        ({"format": "xml"}, "format"),
        ({"from": "yesterday"}, "from"),
        ({"tz": "Mars/Olympus"}, "tz"),
    ):
        r = gw.admin.get("/admin/usage/export", params=params)
        assert r.status_code == 400
        assert r.json()["error"]["param"] == param
    r = gw.admin.get("/admin/usage/export", params={"user": "nobody"})
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "user_not_found"
    r = gw.admin.get("/me/usage/export")
    assert r.status_code == 401
    r = gw.admin.get("/admin/usage/export", headers={"Authorization": "Bearer sk-wrong"})
    assert r.status_code in (401, 403)


def test_a_csv_export_shows_caller_values_that_look_like_formulas_as_text(
    gateways: GatewayFactory,
) -> None:
    gw = gateways.start()
    try:
        uid, key = gw.user("5.00")
        gw.client(key).chat.completions.create(
            model="chat",
            messages=PROMPT,
            user='=HYPERLINK("http://evil.example","x")',
            extra_headers={"x-gateway-tags": "@A1,-2+3,plain", "x-gateway-session-id": "+1"},
        )
        (row,) = gw.wait_usage(uid, 1)
        me = {"Authorization": f"Bearer {key}"}
        table = list(csv.DictReader(io.StringIO(gw.admin.get("/me/usage/export", headers=me).text)))
        (line,) = table
        assert line["end_user"] == """'=HYPERLINK("http://evil.example","x")"""
        assert line["tags"] == "'@A1,-2+3,plain"  # the cell is one value: one quote
        assert line["session_id"] == "'+1"
        assert line["cost"] == row["cost"]  # numbers untouched
        # JSON lines carry the values as recorded.
        jsonl = gw.admin.get("/me/usage/export", params={"format": "jsonl"}, headers=me)
        recorded = orjson.loads(jsonl.text.splitlines()[0])
        assert recorded["end_user"] == row["end_user"] == '=HYPERLINK("http://evil.example","x")'
        assert recorded["tags"] == ["@A1", "-2+3", "plain"]
    finally:
        gw.stop()
