"""Production processes against private PostgreSQL and Redis: a process killed between a
posting's ledger commit and its Redis apply leaves nothing short for long (the reconciler
repairs it, counted in /metrics), a credit committed while Redis is down answers from the
ledger instead of failing, and a Redis that can lose balances is refused at start."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time

import httpx
import pytest
from redis import Redis

from gateway.ledger import open_ledger
from gateway.records import Entry
from tests.support.gateway import usd
from tests.support.processes import GatewayProcess
from tests.support.waiting import wait_until

pytestmark = pytest.mark.production


@pytest.fixture
def production(gateways, pg_dsn, redis_url, tmp_path):  # type: ignore[no-untyped-def]
    started: list[GatewayProcess] = []

    def start(**env: str) -> GatewayProcess:
        env = {
            "GATEWAY_DATABASE_URL": pg_dsn,
            "GATEWAY_REDIS_URL": redis_url,
            "GATEWAY_SPILL_DIR": str(tmp_path / "spill"),
            **env,
        }
        gateway = GatewayProcess(gateways, **env)
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        if gateway.proc.poll() is None:
            gateway.terminate()


def ledger_balance(dsn: str, uid: str) -> int:
    async def read() -> int:
        ledger = await open_ledger(dsn)
        try:
            found = await ledger.journal.balance(uid)
        finally:
            await ledger.close()
        assert found is not None
        return found[0]

    return asyncio.run(read())


def ledger_entries(dsn: str, uid: str) -> list[Entry]:
    async def read() -> list[Entry]:
        ledger = await open_ledger(dsn)
        try:
            return await ledger.journal.list_entries(uid)
        finally:
            await ledger.close()

    return asyncio.run(read())


def store_balance(gateway: GatewayProcess, uid: str) -> int:
    """What the balance store (Redis) holds: GET /admin/users/{id} shows its snapshot."""
    return usd(gateway.get(f"/admin/users/{uid}")["balance"])


def repairs(gateway: GatewayProcess) -> int:
    text = httpx.get(f"{gateway.base_url}/metrics", timeout=10).text
    found = re.search(r"^gateway_reconcile_repairs_total (\d+)$", text, re.M)
    assert found is not None, text
    return int(found.group(1))


def test_a_process_killed_between_commit_and_apply_is_repaired(production, pg_dsn):  # type: ignore[no-untyped-def]
    steady = production(GATEWAY_RECONCILE_INTERVAL="0.2")
    uid, _ = steady.user("1.00")
    assert store_balance(steady, uid) == 10**9  # Redis now caches the balance

    doomed = production(GATEWAY_TEST_CRASH_AFTER_COMMIT="admin:")
    with pytest.raises(httpx.HTTPError):
        doomed.admin.post(f"/admin/users/{uid}/credits", json={"amount": "5.00"})
    assert doomed.terminate() == 70  # exited between the two steps
    assert ledger_balance(pg_dsn, uid) == 6 * 10**9  # committed ...

    deadline = time.monotonic() + 20
    while store_balance(steady, uid) != 6 * 10**9:  # ... and Redis catches up
        assert time.monotonic() < deadline, "the reconciler did not repair the balance"
        time.sleep(0.1)
    assert repairs(steady) == 1
    assert "reconciled " + uid in steady.log()

    # A process started later finds nothing left to repair, and nothing moves twice.
    later = production()
    assert repairs(later) == 0
    assert store_balance(later, uid) == ledger_balance(pg_dsn, uid) == 6 * 10**9


def test_a_credit_committed_while_redis_is_down_answers_the_ledgers_balance(  # type: ignore[no-untyped-def]
    production, pg_dsn, redis_srv
):
    a = production(GATEWAY_RECONCILE_INTERVAL="0.2")
    b = production(GATEWAY_RECONCILE_INTERVAL="0.2")
    uid, _ = a.user("1.00")
    assert store_balance(a, uid) == 10**9  # Redis now caches the balance
    credit = {"amount": "2.00", "reference": "outage-credit-01"}
    bulk = {"user_ids": [uid], "amount": "0.50", "reference": "outage-bulk-01"}
    redis_srv.stop()
    try:
        credited = a.admin.post(f"/admin/users/{uid}/credits", json=credit)
        bulked = a.admin.post("/admin/credits/bulk", json=bulk)
        read = a.admin.get(f"/admin/users/{uid}")
    finally:
        redis_srv.start()
    # Committed in the ledger, so answered (not a 503 a client would retry): the balance is
    # the ledger's, and what calls in flight hold is unknown.
    assert credited.status_code == 200, credited.text
    user = credited.json()["user"]
    assert (user["balance"], user["reserved"]) == ("3.00", None)
    assert credited.json()["entry"]["balance_after"] == "3.00"
    assert bulked.status_code == 200, bulked.text
    row = bulked.json()["data"][0]
    assert (row["status"], row["balance"], row["reserved"], row["duplicate"]) == (
        "applied",
        "3.50",
        None,
        False,
    )
    assert read.status_code == 503  # a plain read committed nothing: retrying it is safe
    references = [e.reference for e in ledger_entries(pg_dsn, uid)]
    assert references[1:] == ["admin:ref:outage-credit-01", f"admin:bulk:outage-bulk-01/{uid}"]
    assert ledger_balance(pg_dsn, uid) == 3_500_000_000

    def seen_by_redis(gateway: GatewayProcess) -> int | None:
        r = gateway.admin.get(f"/admin/users/{uid}")  # the first may meet a dead connection
        return usd(r.json()["balance"]) if r.status_code == 200 else None

    for gateway in (a, b):  # a's retry queue or the reconciler brings Redis level
        wait_until(
            lambda g=gateway: seen_by_redis(g),
            lambda found: found == 3_500_000_000,
            wanted="Redis to hold the ledger's balance",
            timeout=20,
            interval=0.1,
        )
    # The caller retries both (to another process): nothing moves, the first entries answer.
    again = b.admin.post(f"/admin/users/{uid}/credits", json=credit).json()
    assert (again["duplicate"], again["entry"]) == (True, credited.json()["entry"])
    assert (again["user"]["balance"], again["user"]["reserved"]) == ("3.50", "0.00")
    bulk_again = b.admin.post("/admin/credits/bulk", json=bulk).json()["data"][0]
    assert (bulk_again["duplicate"], bulk_again["entry"]) == (True, row["entry"])
    assert len(ledger_entries(pg_dsn, uid)) == 3
    assert ledger_balance(pg_dsn, uid) == store_balance(a, uid) == 3_500_000_000


@pytest.mark.parametrize(
    ("setting", "value"), [("maxmemory-policy", "allkeys-lru"), ("appendonly", "no")]
)
def test_a_redis_that_can_lose_balances_is_refused(gateways, pg_dsn, redis_url, setting, value):  # type: ignore[no-untyped-def]
    redis = Redis.from_url(redis_url)
    before = redis.config_get(setting)[setting]
    redis.config_set(setting, value)
    try:
        settings = gateways.settings(GATEWAY_DATABASE_URL=pg_dsn, GATEWAY_REDIS_URL=redis_url)
        env = {**settings.extra_env}
        refused = subprocess.run(
            [sys.executable, "-m", "gateway", "serve"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert refused.returncode != 0
        assert refused.stderr.startswith("gateway: Redis can lose or evict balances")
        assert f"{setting} is '{value}'" in refused.stderr
        assert "GATEWAY_ALLOW_VOLATILE_REDIS=1" in refused.stderr
        # The documented opt-out starts it anyway.
        allowed = GatewayProcess(
            gateways,
            GATEWAY_DATABASE_URL=pg_dsn,
            GATEWAY_REDIS_URL=redis_url,
            GATEWAY_ALLOW_VOLATILE_REDIS="1",
        )
        assert httpx.get(f"{allowed.base_url}/readyz", timeout=10).status_code == 200
        allowed.terminate()
    finally:
        redis.config_set(setting, before)
        redis.close()


def test_a_redis_of_another_key_layout_is_refused_in_one_line(gateways, pg_dsn, redis_url):  # type: ignore[no-untyped-def]
    redis = Redis.from_url(redis_url)
    before = redis.get("gw:layout")
    redis.set("gw:layout", "untagged:1")  # what every process of this suite writes
    try:
        settings = gateways.settings(GATEWAY_DATABASE_URL=pg_dsn, GATEWAY_REDIS_URL=redis_url)
        refused = subprocess.run(
            [sys.executable, "-m", "gateway", "serve"],
            env={**settings.extra_env, "GATEWAY_REDIS_SHARDS": "4"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert refused.returncode != 0
        assert refused.stderr == (
            "gateway: Redis metering keys are laid out as untagged:1, this process as"
            " tagged:4: changing the shard count needs every stream drained first (README,"
            " Redis Cluster)\n"
        )
        assert redis.get("gw:layout") == b"untagged:1"  # the refusal changed nothing
    finally:
        if before is None:
            redis.delete("gw:layout")
        else:
            redis.set("gw:layout", before)
        redis.close()
