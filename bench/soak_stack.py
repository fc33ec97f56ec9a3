"""The soak's servers: private PostgreSQL and Redis (tests/support/servers.py, the suite's own),
the mock upstream in its own process and two production `gateway serve` processes, each a child
of the soak that can be stopped, restarted and SIGKILLed by its own pid."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.support.servers import PostgresServer, RedisServer  # noqa: E402

ADMIN_KEY = "soak-admin-key"
WEBHOOK_SECRET = "whsec_soak_secret"
PROVIDER_KEY = "sk-soak-provider"
HOST = "127.0.0.1"

# Whole nano-dollars per token everywhere, so every cost is exact and easy to read.
MODELS = """\
currency: usd
providers:
  mock: {{base_url: "{base}", api_key_env: SOAK_PROVIDER_KEY}}
  mock-anthropic: {{api: anthropic, base_url: "{base}", api_key_env: SOAK_PROVIDER_KEY}}
models:
  chat:
    provider: mock
    upstream_model: mock-gpt
    price: {{input: "2.00", cached_input: "1.00", output: "8.00"}}
    max_output_tokens: 400
    context_window: 100000
  cheap:
    provider: mock
    upstream_model: mock-gpt-mini
    price: {{input: "0.10", output: "0.40"}}
    max_output_tokens: 400
  embed:
    provider: mock
    kind: embedding
    upstream_model: mock-embedding
    price: {{input: "0.02"}}
  claude:
    provider: mock-anthropic
    upstream_model: claude-mock-1
    price: {{input: "3.00", cached_input: "0.30", output: "15.00"}}
    max_output_tokens: 400
    context_window: 200000
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def _own_group() -> None:  # runs in the child between fork and exec
    os.setpgrp()  # a ^C on the terminal reaches the soak only, which stops children in order


def _own_group_and_die_with_parent() -> None:
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    _own_group()


def _child_setup() -> Callable[[], None]:
    # The parent-death signal follows the thread that forked: only the main thread's children
    # get it, or a worker thread's exit would kill them (tests/support/servers.py does alike).
    if threading.current_thread() is threading.main_thread():
        return _own_group_and_die_with_parent
    return _own_group


def rss_mb(pid: int) -> float:
    """VmRSS of one process, MB (0 when it is gone)."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process so far, seconds (0 when it is gone)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rfind(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return 0.0


@dataclass
class Gateway:
    """One `gateway serve` process on a fixed port; ``generation`` counts its starts."""

    name: str
    port: int
    env: dict[str, str]
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None
    generation: int = 0
    killed_at: dict[int, float] = field(default_factory=dict)  # generation -> monotonic time
    cpu_before: float = 0.0  # CPU of earlier generations, seconds
    ready: tuple[int, float] = (0, 0.0)  # (generation, monotonic time) of the last /healthz 200

    @property
    def base(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc is not None else 0

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 60.0) -> None:
        self.spawn()
        self.wait_ready(timeout)

    def spawn(self) -> None:
        log = (self.workdir / f"{self.name}.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=self.workdir,
            preexec_fn=_child_setup(),
        )
        log.close()
        self.generation += 1

    def wait_ready(self, timeout: float = 60.0) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start:\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.base}/healthz", timeout=2).status_code == 200:
                    self.ready = (self.generation, time.monotonic())
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: /healthz not ready:\n{self.log_tail()}")
            time.sleep(0.1)

    def sigkill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.cpu_before += cpu_seconds(self.proc.pid)
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.killed_at[self.generation] = time.monotonic()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def cpu(self) -> float:
        return self.cpu_before + (cpu_seconds(self.pid) if self.alive() else 0.0)

    def log_tail(self, lines: int = 30) -> str:
        path = self.workdir / f"{self.name}.log"
        with contextlib.suppress(OSError):
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        return ""


class Stack:
    """Everything the soak runs against; ``close()`` stops all of it."""

    def __init__(self, workdir: Path, *, reservation_ttl: float) -> None:
        self.workdir = workdir
        self.reservation_ttl = reservation_ttl
        self.pg: PostgresServer | None = None
        self.redis: RedisServer | None = None
        self.mock: subprocess.Popen[bytes] | None = None
        self.gateways: list[Gateway] = []
        self.dsn = ""

    def start(self) -> None:
        mock_port = free_port()
        mock_log = (self.workdir / "mock.log").open("ab")
        self.mock = subprocess.Popen(
            [sys.executable, "-m", "gateway", "mock-upstream", "--port", str(mock_port)],
            stdin=subprocess.DEVNULL,
            stdout=mock_log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            cwd=self.workdir,
            preexec_fn=_child_setup(),
        )
        mock_log.close()
        # base_dir None: the system temp dir, which the postgres user (when we are root) can
        # traverse; our own work dir may not be.
        self.pg = PostgresServer()
        self.pg.start()
        self.dsn = self.pg.create_database("gateway_soak")
        # like a production Redis: AOF fsynced once a second (the suite uses "always")
        self.redis = RedisServer(appendfsync="everysec")
        self.redis.start()
        models = self.workdir / "models.yaml"
        models.write_text(MODELS.format(base=f"http://{HOST}:{mock_port}/v1"))
        self._wait_mock(mock_port)
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "GATEWAY_DATABASE_URL": self.dsn,
            "GATEWAY_REDIS_URL": self.redis.url,
            "GATEWAY_MODELS": str(models),
            "GATEWAY_ADMIN_KEY": ADMIN_KEY,
            "GATEWAY_HOST": HOST,
            "SOAK_PROVIDER_KEY": PROVIDER_KEY,
            "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
            # One spill directory: a restarted process adopts what its killed self journaled.
            "GATEWAY_SPILL_DIR": str(self.workdir / "spill"),
            # Short enough that a killed process's leftovers are picked up within the run.
            "GATEWAY_STREAM_CLAIM_IDLE": "5",
            "GATEWAY_RECONCILE_INTERVAL": "5",
            "GATEWAY_RESERVATION_TTL": str(self.reservation_ttl),
            "GATEWAY_UPSTREAM_TIMEOUT": "3",
            "GATEWAY_RETRY_ATTEMPTS": "2",
            "GATEWAY_SHUTDOWN_GRACE": "5",
        }
        for name in ("gw-a", "gw-b"):
            port = free_port()
            self.gateways.append(
                Gateway(name, port, {**env, "GATEWAY_PORT": str(port)}, self.workdir)
            )
        # Started together: migrations run under an advisory lock, one process applies them.
        for gw in self.gateways:
            gw.spawn()
        for gw in self.gateways:
            gw.wait_ready()

    def _wait_mock(self, port: int) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.mock is not None and self.mock.poll() is not None:
                raise RuntimeError("the mock upstream exited at start")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://{HOST}:{port}/v1/models", timeout=2).status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError("the mock upstream did not answer")

    def close(self) -> None:
        for gw in self.gateways:
            with contextlib.suppress(Exception):
                gw.stop()
        if self.mock is not None and self.mock.poll() is None:
            self.mock.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.mock.wait(10)
        for server in (self.redis, self.pg):
            if server is not None:
                with contextlib.suppress(Exception):
                    server.cleanup()
