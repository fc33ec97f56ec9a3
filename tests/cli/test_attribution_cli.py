"""`gateway users list`, `stats --group-by`, `report usage` and `usage export` against a real
embedded gateway: the same answers through the admin API and --direct; GET /admin/users over
httpx pages by cursor."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from tests.cli.test_cli import as_json, env, failure, gateway  # noqa: F401  (env: a fixture)
from tests.support.gateway import RunningGateway

PROMPT = [{"role": "user", "content": "one two three"}]


def test_users_list_searches_and_pages(
    env: RunningGateway,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    for i in range(5):
        r = env.admin.post("/admin/users", json={"id": f"shop-{i}", "email": f"Owner{i}@Shop.io"})
        assert r.status_code == 201
    env.admin.post("/admin/users", json={"id": "other", "email": "x@elsewhere.org"})
    seen: list[str] = []
    params = {"query": "SHOP.IO", "limit": "2"}
    while True:
        page = env.admin.get("/admin/users", params=params).json()
        seen += [u["id"] for u in page["data"]]
        assert all(
            set(u) >= {"id", "email", "balance", "reserved", "created_at"} for u in page["data"]
        )
        if not page["has_more"]:
            break
        params = {**params, "cursor": page["next_cursor"]}
    assert seen == [f"shop-{i}" for i in reversed(range(5))]
    for command in (("users", "list", "--query", "shop-3"), ("users", "list", "--limit", "2")):
        assert as_json(capsys, *command) == as_json(capsys, *command, "--direct"), command
    assert [u["id"] for u in as_json(capsys, "users", "list", "--query", "shop-3")["data"]] == [
        "shop-3"
    ]
    out = gateway(capsys, "users", "list", "--query", "elsewhere")
    assert out.splitlines()[0].split() == ["id", "email", "balance", "reserved", "created"]
    bad = env.admin.get("/admin/users", params={"cursor": "nope"})
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "cursor"


def test_group_by_and_export_commands_answer_the_same_both_ways(
    env: RunningGateway,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    uid, key = env.user("5.00")
    client = env.client(key)
    for tags, session in (("a,b", "s1"), ("b", "s1"), ("", "s2")):
        client.chat.completions.create(
            model="chat",
            messages=PROMPT,
            user="eu-1",
            extra_headers={"x-gateway-tags": tags, "x-gateway-session-id": session},
        )
    env.wait_usage(uid, 3)
    for command in (
        ("stats", uid, "--group-by", "tag"),
        ("stats", uid, "--group-by", "session", "--limit", "1"),
        ("report", "usage", "--group-by", "end_user"),
        ("report", "usage", "--group-by", "key", "--user", uid),
        ("report", "usage"),
    ):
        assert as_json(capsys, *command) == as_json(capsys, *command, "--direct"), command
    stats = as_json(capsys, "stats", uid, "--group-by", "tag")
    assert {g["tag"]: g["requests"] for g in stats["groups"]} == {"a": 1, "b": 2, None: 1}
    table = gateway(capsys, "report", "usage", "--group-by", "session")
    rows = {line.split()[0]: line.split()[1] for line in table.splitlines()[3:]}
    assert rows == {"s1": "2", "s2": "1", "total": "3"}
    assert failure(capsys, "report", "usage", "--group-by", "colour") == "2"  # argparse

    via_api, direct = tmp_path / "api.jsonl", tmp_path / "direct.jsonl"
    gateway(capsys, "usage", "export", "--format", "jsonl", "--user", uid, "-o", str(via_api))
    gateway(
        capsys, "usage", "export", "--format", "jsonl", "--user", uid, "-o", str(direct), "--direct"
    )
    lines = [orjson.loads(line) for line in via_api.read_bytes().splitlines()]
    assert via_api.read_bytes() == direct.read_bytes()
    assert [line["session_id"] for line in lines] == ["s1", "s1", "s2"]
    csv_out = gateway(capsys, "usage", "export", "--from", "2020-01-01")
    assert csv_out.splitlines()[0].startswith("created_at,request_id,user_id")
    assert len(csv_out.splitlines()) == 4
    assert failure(capsys, "usage", "export", "--from", "soon") == "gateway: " + (
        "from: 'soon' is not an ISO date (2024-05-31) or datetime"
    )
