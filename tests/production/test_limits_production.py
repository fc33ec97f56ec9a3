"""Key limits hold across processes: two gateway processes on one PostgreSQL + Redis share a
key's rpm and budget, so the sum of what both admit never passes the limit."""

from __future__ import annotations

import concurrent.futures

import pytest

from tests.production.test_production import call, production, settled_records  # noqa: F401
from tests.support.gateway import usd

pytestmark = pytest.mark.production


def keyed(gateway, limits):  # type: ignore[no-untyped-def]
    uid = gateway.admin.post("/admin/users", json={"initial_credit": "10.00"}).json()["id"]
    r = gateway.admin.post(f"/admin/users/{uid}/keys", json={"limits": limits})
    assert r.status_code == 201, r.text
    return uid, r.json()["id"], r.json()["key"]


def burst(gateways, key, count):  # type: ignore[no-untyped-def]
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        return list(pool.map(lambda i: call(gateways[i % 2].base_url, key), range(count)))


def test_two_processes_share_one_keys_rpm(production):  # noqa: F811
    a, b = production(), production()
    uid, key_id, key = keyed(a, {"rpm": 7})
    codes = burst((a, b), key, 40)
    assert codes.count(200) == 7
    assert codes.count(429) == 33
    settled_records(a, uid, 7)
    shown = b.get(f"/admin/keys/{key_id}")["usage"]
    assert shown["requests"] == 7
    assert shown["in_flight"] == 0


def test_two_processes_share_one_keys_budget(production):  # noqa: F811
    a, b = production(), production()
    uid, key_id, key = keyed(a, {"budget": {"amount": "0.0008", "period": "month"}})
    codes = burst((a, b), key, 60)
    served = codes.count(200)
    assert served >= 1
    assert set(codes) <= {200, 402}
    rows = settled_records(a, uid, served)
    spent = sum(usd(r["cost"]) for r in rows)
    assert len(rows) == served
    assert spent <= usd("0.0008")
    for gateway in (a, b):
        assert usd(gateway.get(f"/admin/keys/{key_id}")["usage"]["spent"]) == spent
