"""Gateways as real `python -m gateway serve` processes, for shutdown and multi-process tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any

import httpx

from tests.support.gateway import ADMIN_KEY, GatewayFactory
from tests.support.waiting import wait_until


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

    def _health(self) -> str:
        """/healthz's status code now, the connection error, or the process's exit."""
        if self.proc.poll() is not None:
            return f"the process exited with code {self.proc.returncode}"
        try:
            return str(httpx.get(f"{self.base_url}/healthz", timeout=2).status_code)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"

    def _wait_healthy(self, timeout: float = 30) -> None:
        seen = wait_until(
            self._health,
            lambda health: health == "200" or health.startswith("the process exited"),
            wanted=f"/healthz 200 from {self.base_url}",
            show=lambda health: f"{health}; log:\n{self.log()}",
            timeout=timeout,
        )
        assert seen == "200", (
            f"wanted /healthz 200 from {self.base_url}, saw {seen}; log:\n{self.log()}"
        )

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
