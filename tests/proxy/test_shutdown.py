"""SIGTERM on a real `gateway serve` process: in-flight streams finish, all is settled, exit 0."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import httpx

from tests.support.gateway import ADMIN_KEY, PROVIDER_KEY


def start_process(gateways, **env_extra):  # type: ignore[no-untyped-def]
    settings = gateways.settings(**env_extra)
    env = {**os.environ, **settings.extra_env}
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{settings.port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            if httpx.get(f"{base}/healthz").status_code == 200:
                return proc, base, settings
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, proc.stdout.read().decode()
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_sigterm_lets_streams_finish_settles_them_and_exits_zero(gateways):
    proc, base, settings = start_process(gateways)
    admin = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    uid = admin.post("/admin/users", json={"initial_credit": "5"}).json()["id"]
    key = admin.post(f"/admin/users/{uid}/keys", json={}).json()["key"]
    results: list[bytes] = []
    under_way = [threading.Event() for _ in range(3)]

    def stream(started: threading.Event) -> None:
        body = {"model": "chat", "stream": True, "messages": [
            {"role": "user", "content": "[[mock:chunks=20]] [[mock:chunk_delay=0.05]]"}]}
        with httpx.stream("POST", f"{base}/v1/chat/completions", json=body, timeout=30,
                          headers={"Authorization": f"Bearer {key}"}) as r:
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
    proc.send_signal(signal.SIGTERM)
    for t in threads:
        t.join(30)
    assert proc.wait(30) == 0
    log = proc.stdout.read().decode()
    proc.stdout.close()
    admin.close()
    assert len(results) == 3
    for body in results:
        assert body.rstrip().endswith(b"data: [DONE]")
        assert body.count(b'"content":" w') == 20
    db = sqlite3.connect(settings.database_url.removeprefix("sqlite:///"))
    rows = db.execute("SELECT status, usage_source, cost FROM usage_records WHERE user_id = ?",
                      (uid,)).fetchall()
    balance = db.execute("SELECT balance FROM users WHERE id = ?", (uid,)).fetchone()[0]
    entries = db.execute("SELECT SUM(amount) FROM ledger_entries WHERE user_id = ?",
                         (uid,)).fetchone()[0]
    db.close()
    assert sorted(r[:2] for r in rows) == [("ok", "upstream")] * 3
    assert balance == entries == 5 * 10**9 - sum(r[2] for r in rows)
    # Secrets never reach the log.
    for secret in (key, PROVIDER_KEY, ADMIN_KEY):
        assert secret not in log


def test_restart_finds_every_usage_record(gateways):
    proc, base, settings = start_process(gateways)
    admin = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    uid = admin.post("/admin/users", json={"initial_credit": "5"}).json()["id"]
    key = admin.post(f"/admin/users/{uid}/keys", json={}).json()["key"]
    for _ in range(25):
        r = httpx.post(f"{base}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                       json={"model": "chat", "messages": [{"role": "user", "content": "x"}]})
        assert r.status_code == 200
    proc.send_signal(signal.SIGTERM)  # usage may still be in the outbox: it must be flushed
    assert proc.wait(30) == 0
    proc.stdout.close()
    admin.close()
    proc, base, _ = start_process(gateways, GATEWAY_PORT=str(settings.port))
    try:
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as c:
            rows = c.get(f"/admin/users/{uid}/usage", params={"limit": 100}).json()["data"]
        assert len(rows) == 25
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        proc.stdout.close()
