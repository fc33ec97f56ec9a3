"""Gateways as real `python -m gateway serve` processes, for shutdown and multi-process tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

import httpx

from tests.support.gateway import ADMIN_KEY, GatewayFactory


class GatewayProcess:
    def __init__(self, gateways: GatewayFactory, *args: str, **env: str) -> None:
        self.settings = gateways.settings(**env)
        self.base_url = f"http://127.0.0.1:{self.settings.port}"
        self.log_path = gateways.tmp / f"gateway-{self.settings.port}.log"
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", *args],
            env={**os.environ, **self.settings.extra_env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.admin = httpx.Client(
            base_url=self.base_url, timeout=30, headers={"Authorization": f"Bearer {ADMIN_KEY}"}
        )
        self._wait_healthy()

    def _wait_healthy(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gateway did not start:\n{self.log()}")
            time.sleep(0.05)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def user(self, credit: str) -> tuple[str, str]:
        uid = self.admin.post("/admin/users", json={"initial_credit": credit}).json()["id"]
        key = self.admin.post(f"/admin/users/{uid}/keys", json={}).json()["key"]
        return uid, key

    def get(self, path: str, **kw: Any) -> Any:
        r = self.admin.get(path, **kw)
        assert r.status_code == 200, r.text
        return r.json()

    def terminate(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self._close()
        return code

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        self._close()

    def _close(self) -> None:
        self.admin.close()
        self._log.close()
