"""SIGTERM on a real `gateway serve` process: in-flight streams finish, all is settled, exit 0."""

from __future__ import annotations

import signal
import sqlite3
import threading

import httpx

from tests.support.gateway import ADMIN_KEY, PROVIDER_KEY
from tests.support.processes import GatewayProcess


def test_sigterm_lets_streams_finish_settles_them_and_exits_zero(gateways):
    gateway = GatewayProcess(gateways)
    base, settings = gateway.base_url, gateway.settings
    uid, key = gateway.user("5")
    results: list[bytes] = []
    under_way = [threading.Event() for _ in range(3)]

    def stream(started: threading.Event) -> None:
        body = {
            "model": "chat",
            "stream": True,
            "messages": [
                {"role": "user", "content": "[[mock:chunks=20]] [[mock:chunk_delay=0.05]]"}
            ],
        }
        with httpx.stream(
            "POST",
            f"{base}/v1/chat/completions",
            json=body,
            timeout=30,
            headers={"Authorization": f"Bearer {key}"},
        ) as r:
            received = []
            for part in r.iter_bytes():
                received.append(part)
                started.set()
            results.append(b"".join(received))

    threads = [threading.Thread(target=stream, args=(e,)) for e in under_way]
    for t in threads:
        t.start()
    for e in under_way:
        assert e.wait(20)  # every stream has begun before the signal
    gateway.proc.send_signal(signal.SIGTERM)
    for t in threads:
        t.join(30)
    assert gateway.terminate() == 0
    log = gateway.log()
    assert len(results) == 3
    for body in results:
        assert body.rstrip().endswith(b"data: [DONE]")
        assert body.count(b'"content":" w') == 20
    db = sqlite3.connect(settings.database_url.removeprefix("sqlite:///"))
    rows = db.execute(
        "SELECT status, usage_source, cost FROM usage_records WHERE user_id = ?", (uid,)
    ).fetchall()
    balance = db.execute("SELECT balance FROM users WHERE id = ?", (uid,)).fetchone()[0]
    entries = db.execute(
        "SELECT SUM(amount) FROM ledger_entries WHERE user_id = ?", (uid,)
    ).fetchone()[0]
    db.close()
    # The mock reports 0 prompt tokens for a prompt of directives only: the gateway counts it.
    assert sorted(r[:2] for r in rows) == [("ok", "upstream_prompt_counted")] * 3
    assert balance == entries == 5 * 10**9 - sum(r[2] for r in rows)
    # Secrets never reach the log.
    for secret in (key, PROVIDER_KEY, ADMIN_KEY):
        assert secret not in log


def test_restart_finds_every_usage_record(gateways):
    gateway = GatewayProcess(gateways)
    uid, key = gateway.user("5")
    for _ in range(25):
        r = httpx.post(
            f"{gateway.base_url}/v1/chat/completions",
            headers={"Authorization": f"Bearer {key}"},
            json={"model": "chat", "messages": [{"role": "user", "content": "x"}]},
        )
        assert r.status_code == 200
    # Usage may still be in the outbox: SIGTERM must flush it.
    assert gateway.terminate() == 0
    again = GatewayProcess(gateways, GATEWAY_PORT=str(gateway.settings.port))
    try:
        rows = again.get(f"/admin/users/{uid}/usage", params={"limit": 100})["data"]
        assert len(rows) == 25
    finally:
        again.terminate()
