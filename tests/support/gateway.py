"""A real gateway for tests: uvicorn on a free port in a background thread, driven over HTTP
with httpx (admin) and the official openai SDK (callers)."""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import uvicorn

from gateway.app import create_app
from gateway.mock.runner import MockUpstreamThread
from gateway.settings import Settings
from tests.support.waiting import wait_until

ADMIN_KEY = "test-admin-key"
PROVIDER_KEY = "sk-provider-secret-123"

MODELS = """\
currency: usd
providers:
  mock:
    base_url: {base_url}
    api_key_env: MOCK_PROVIDER_KEY
  dead:
    base_url: http://127.0.0.1:{dead_port}/v1
models:
  chat:
    provider: mock
    upstream_model: mock-gpt
    price: {{input: "2.50", cached_input: "1.25", output: "10.00"}}
    max_output_tokens: 1000
  cheap:
    provider: mock
    upstream_model: mock-gpt-mini
    price: {{input: "0.10", output: "0.40"}}
    max_output_tokens: 100
  embed:
    provider: mock
    kind: embedding
    upstream_model: mock-embedding
    price: {{input: "0.02"}}
  nowhere:
    provider: dead
    price: {{input: "1.00", output: "1.00"}}
    max_output_tokens: 100
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def usd(value: str) -> int:
    return int(Decimal(value) * 10**9)


@dataclass
class RunningGateway:
    base_url: str
    settings: Settings
    server: uvicorn.Server
    thread: threading.Thread
    admin: httpx.Client
    clients: list[openai.OpenAI] = field(default_factory=list)

    def client(self, key: str, **kw: Any) -> openai.OpenAI:
        client = openai.OpenAI(base_url=f"{self.base_url}/v1", api_key=key, max_retries=0, **kw)
        self.clients.append(client)  # closed in stop(): an unclosed pool warns when collected
        return client

    def user(self, credit: str = "10.00", user_id: str | None = None) -> tuple[str, str]:
        """Creates a user with ``credit`` USD and a key; returns (user_id, key)."""
        body: dict[str, Any] = {"initial_credit": credit}
        if user_id:
            body["id"] = user_id
        r = self.admin.post("/admin/users", json=body)
        assert r.status_code == 201, r.text
        uid = r.json()["id"]
        k = self.admin.post(f"/admin/users/{uid}/keys", json={"name": "test"})
        assert k.status_code == 201, k.text
        return uid, k.json()["key"]

    def balance(self, user_id: str) -> int:
        r = self.admin.get(f"/admin/users/{user_id}")
        assert r.status_code == 200, r.text
        return usd(r.json()["balance"])

    def usage(self, user_id: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        offset = 0
        while True:
            r = self.admin.get(
                f"/admin/users/{user_id}/usage", params={"limit": 1000, "offset": offset}
            )
            assert r.status_code == 200, r.text
            page = r.json()
            rows += page["data"]
            if not page["has_more"]:
                return rows
            offset += len(page["data"])

    def wait_usage(self, user_id: str, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """The user's usage rows once at least ``count`` have settled; AssertionError if not."""
        return wait_until(
            lambda: self.usage(user_id),
            lambda rows: len(rows) >= count,
            wanted=f"{count} usage rows of user {user_id}",
            show=lambda rows: f"{len(rows)}",
            timeout=timeout,
        )

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.admin.close()
        for client in self.clients:
            client.close()


class GatewayFactory:
    def __init__(self, upstream: MockUpstreamThread, tmp: Path) -> None:
        self.upstream = upstream
        self.tmp = tmp
        self.running: list[RunningGateway] = []

    def models_file(self) -> Path:
        path = self.tmp / "models.yaml"
        if not path.exists():
            path.write_text(MODELS.format(base_url=self.upstream.base_url, dead_port=free_port()))
        return path

    def settings(self, **env: str) -> Settings:
        base = {
            "GATEWAY_DATABASE_URL": f"sqlite:///{self.tmp}/gateway.db",
            "GATEWAY_MODELS": str(self.models_file()),
            "GATEWAY_ADMIN_KEY": ADMIN_KEY,
            "GATEWAY_PORT": str(free_port()),
            "MOCK_PROVIDER_KEY": PROVIDER_KEY,
            "GATEWAY_SHUTDOWN_GRACE": "5",
        }
        base.update(env)
        return Settings.from_env(base)

    def start(self, **env: str) -> RunningGateway:
        settings = self.settings(**env)
        config = uvicorn.Config(
            create_app(settings),
            host="127.0.0.1",
            port=settings.port,
            lifespan="on",
            access_log=False,
            log_level="warning",
            timeout_graceful_shutdown=5,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        wait_until(
            lambda: (server.started, thread.is_alive()),
            lambda state: state[0] or not state[1],
            wanted=f"the gateway on port {settings.port} to start",
            show=lambda state: "it still starting",
            timeout=20,
            interval=0.01,
        )
        assert server.started, f"the gateway on port {settings.port} stopped while starting"
        base_url = f"http://127.0.0.1:{settings.port}"
        admin = httpx.Client(
            base_url=base_url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=30
        )
        gw = RunningGateway(base_url, settings, server, thread, admin)
        self.running.append(gw)
        return gw

    def close(self) -> None:
        for gw in self.running:
            gw.stop()
        self.running.clear()


def start_in_mode(
    request: Any, gateways: GatewayFactory, tmp_path: Path, models: str
) -> RunningGateway:
    """A gateway serving ``models`` (a models.yaml text with ``{base_url}`` for the mock),
    embedded or production as the parametrized fixture's ``request.param`` says."""
    path = tmp_path / "models.yaml"
    path.write_text(models.format(base_url=gateways.upstream.base_url))
    env = {"GATEWAY_MODELS": str(path)}
    if request.param == "production":
        env["GATEWAY_DATABASE_URL"] = request.getfixturevalue("pg_dsn")
        env["GATEWAY_REDIS_URL"] = request.getfixturevalue("redis_url")
    return gateways.start(**env)
