"""Production mode against real servers: several gateway processes sharing private
PostgreSQL and Redis; faults injected by stopping, restarting and killing them."""

from __future__ import annotations

import concurrent.futures
import threading
import time

import httpx
import pytest

from tests.support.gateway import usd
from tests.support.processes import GatewayProcess
from tests.support.waiting import wait_until

pytestmark = pytest.mark.production

CALL = {
    "model": "chat",
    "max_tokens": 10,
    "messages": [
        {"role": "user", "content": "one two three four five six seven eight [[mock:chunks=10]]"}
    ],
}
# The mock counts 8 prompt words (a plausible count of this prompt, so it is billed as
# reported) at $2.50 per 1M and 10 output tokens at $10 per 1M.
COST = 8 * 2_500 + 10 * 10_000


@pytest.fixture
def production(gateways, pg_dsn, redis_url, tmp_path):  # type: ignore[no-untyped-def]
    started: list[GatewayProcess] = []

    def start(*args: str, **env: str) -> GatewayProcess:
        env = {
            "GATEWAY_DATABASE_URL": pg_dsn,
            "GATEWAY_REDIS_URL": redis_url,
            "GATEWAY_SPILL_DIR": str(tmp_path / "spill"),
            **env,
        }
        gateway = GatewayProcess(gateways, *args, **env)
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        if gateway.proc.poll() is None:
            gateway.terminate()


def call(base_url: str, key: str, timeout: float = 30) -> int:
    try:
        r = httpx.post(
            f"{base_url}/v1/chat/completions",
            json=CALL,
            timeout=timeout,
            headers={"Authorization": f"Bearer {key}"},
        )
    except httpx.HTTPError:
        return 0
    return r.status_code


def settled_records(
    gateway: GatewayProcess, uid: str, count: int, timeout: float = 30
) -> list[dict]:
    """At least ``count`` usage rows of ``uid`` in the ledger; AssertionError if they never come."""
    return wait_until(
        lambda: gateway.get(f"/admin/users/{uid}/usage", params={"limit": 1000})["data"],
        lambda rows: len(rows) >= count,
        wanted=f"{count} settled usage rows of user {uid}",
        show=lambda rows: f"{len(rows)}",
        timeout=timeout,
        interval=0.1,
    )


def ledger_balance(gateway: GatewayProcess, uid: str) -> int:
    # The stats/ledger view after the stream has drained into PostgreSQL.
    return usd(gateway.get(f"/admin/users/{uid}")["balance"])


def test_two_processes_never_overspend_one_balance(production):
    a, b = production(), production()
    uid, key = a.user("0.001")  # eight calls' worth of real cost
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(lambda i: call((a, b)[i % 2].base_url, key), range(80)))
    served = codes.count(200)
    assert served >= 1
    assert set(codes) <= {200, 402}
    assert served <= usd("0.001") // COST
    rows = settled_records(a, uid, served)
    assert len(rows) == served == len({r["request_id"] for r in rows})
    assert sum(usd(r["cost"]) for r in rows) == served * COST
    for gateway in (a, b):
        balance = ledger_balance(gateway, uid)
        assert balance == usd("0.001") - served * COST >= 0


def test_postgres_outage_keeps_calls_flowing_and_loses_nothing(production, pg):
    gateway = production(GATEWAY_AUTH_CACHE_TTL="0.5")
    uid, key = gateway.user("5.00")
    assert call(gateway.base_url, key) == 200  # key cached, balance loaded into Redis
    pg.stop()
    try:
        during = [call(gateway.base_url, key) for _ in range(20)]
        time.sleep(1)  # past the auth cache ttl: the known key must keep working
        during += [call(gateway.base_url, key) for _ in range(5)]
        ready = httpx.get(f"{gateway.base_url}/readyz").json()
        assert ready["database"].startswith("down")
    finally:
        pg.start()
    assert during == [200] * 25
    rows = settled_records(gateway, uid, 26)
    assert len(rows) == 26 == len({r["request_id"] for r in rows})
    assert ledger_balance(gateway, uid) == usd("5.00") - 26 * COST


def test_redis_restart_resumes_without_double_or_missed_charges(production, redis_srv):
    gateway = production()
    uid, key = gateway.user("5.00")
    before = [call(gateway.base_url, key) for _ in range(10)]
    redis_srv.restart()
    after = [call(gateway.base_url, key) for _ in range(10)]
    assert before == [200] * 10
    assert after.count(200) >= 9  # the first call may meet a dead pooled connection: 503
    served = before.count(200) + after.count(200)
    rows = settled_records(gateway, uid, served)
    assert len(rows) == served
    assert ledger_balance(gateway, uid) == usd("5.00") - served * COST


def test_killed_process_settlements_are_written_by_another(production):
    env = {"GATEWAY_STREAM_CLAIM_IDLE": "1", "GATEWAY_RESERVATION_TTL": "2"}
    a, b = production(**env), production(**env)
    uid, key = a.user("5.00")
    stop = threading.Event()
    codes: list[int] = []

    def traffic() -> None:
        while not stop.is_set():
            codes.append(call(a.base_url, key, timeout=5))

    threads = [threading.Thread(target=traffic) for _ in range(4)]
    for t in threads:
        t.start()
    # Kill mid-traffic once some calls have been served, however slow the machine is.
    wait_until(
        lambda: codes.count(200),
        lambda served: served >= 4,
        wanted="4 calls served by the first process before killing it",
        timeout=30,
    )
    a.kill()
    stop.set()
    for t in threads:
        t.join(10)
    served = codes.count(200)
    assert served > 0
    # Every call the client saw succeed has exactly one record; calls cut by the kill may
    # have one too (settled before the kill) but never two.
    rows = settled_records(b, uid, served, timeout=30)
    ids = [r["request_id"] for r in rows]
    assert len(ids) == len(set(ids)) >= served
    wait_until(
        lambda: b.get(f"/admin/users/{uid}")["reserved"],
        lambda reserved: reserved == "0.00",
        wanted="the dead process's reservations expired (reserved 0.00)",
        timeout=20,
        interval=0.2,
    )
    assert ledger_balance(b, uid) == usd("5.00") - sum(usd(r["cost"]) for r in rows)


def test_redis_unreachable_answers_503_not_unmetered_traffic(production, redis_srv):
    gateway = production()
    uid, key = gateway.user("5.00")
    assert call(gateway.base_url, key) == 200
    redis_srv.stop()
    try:
        r = httpx.post(
            f"{gateway.base_url}/v1/chat/completions",
            json=CALL,
            timeout=30,
            headers={"Authorization": f"Bearer {key}"},
        )
        assert r.status_code == 503
        assert r.json()["error"]["code"] == "dependency_unavailable"
    finally:
        redis_srv.start()
    assert len(settled_records(gateway, uid, 1)) == 1


def test_a_gateway_started_while_redis_is_down_serves_once_it_is_back(production, redis_srv):
    redis_srv.stop()
    try:
        gateway = production()  # no traceback, no exit: it serves what it can
        uid, key = gateway.user("5.00")  # the ledger answers
        assert call(gateway.base_url, key) == 503
    finally:
        redis_srv.start()
    wait_until(
        lambda: call(gateway.base_url, key),
        lambda code: code == 200,
        wanted="a call served once Redis is back",
        timeout=30,
        interval=0.5,
    )
    assert len(settled_records(gateway, uid, 1)) == 1
    assert "Traceback" not in gateway.log()


def test_workers_share_one_balance_and_drain_on_sigterm(production):
    gateway = production("--workers", "2")
    uid, key = gateway.user("5.00")
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda _: call(gateway.base_url, key), range(40)))
    assert codes == [200] * 40
    assert len(settled_records(gateway, uid, 40)) == 40
    assert ledger_balance(gateway, uid) == usd("5.00") - 40 * COST
    assert gateway.terminate() == 0


def test_workers_are_refused_without_redis_and_postgres(gateways):
    import subprocess
    import sys

    settings = gateways.settings()
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--workers", "2"],
        env={**settings.extra_env, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "GATEWAY_REDIS_URL" in done.stderr


def test_stripe_top_up_credits_once_across_processes(production):
    from tests.billing.helpers import STRIPE_KEY, WEBHOOK_SECRET, deliver, event, session

    env = {"STRIPE_API_KEY": STRIPE_KEY, "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET}
    a, b = production(**env), production(**env)
    uid, key = a.user("0")
    assert call(b.base_url, key) == 402  # loads the empty balance into Redis first
    delivery = event(
        "evt_prod", "checkout.session.completed", session(uid, session_id="cs_prod", subtotal=1500)
    )
    async_paid = event(
        "evt_prod_async",
        "checkout.session.async_payment_succeeded",
        session(uid, session_id="cs_prod", subtotal=1500),
    )
    # One payment under two event types, each delivered several times, to both processes.
    deliveries = [((a, b)[i % 2], (delivery, async_paid)[i % 3 == 0]) for i in range(10)]
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda d: deliver(*d), deliveries))
    assert {r.status_code for r in answers} == {200}
    for gateway in (a, b):
        assert usd(gateway.get(f"/admin/users/{uid}")["balance"]) == usd("15.00")
    assert call(b.base_url, key) == 200  # the credit reached Redis at once
    rows = settled_records(a, uid, 1)
    assert ledger_balance(a, uid) == usd("15.00") - sum(usd(r["cost"]) for r in rows)
