"""A private Redis Cluster for tests: masters and replicas on loopback, started by the suite.

Each node is a ``RedisServer`` (tests/support/servers.py: its own directory, AOF with
``appendfsync always``, a child of the test run) started with ``--cluster-enabled yes``; the
cluster is formed by ``redis-cli --cluster create ... --cluster-yes``, like an operator would.

Fixtures
--------
redis_cluster (session)  3 masters + 3 replicas, started once, cleaned up at the end
cluster_url   (function) ``redis+cluster://127.0.0.1:PORT`` of a healthy, flushed cluster
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.servers import (
    RedisServer,
    ServerError,
    find_redis_server,
    free_port,
    require_or_skip,
)

__all__ = ["RedisClusterServers", "cluster_url", "redis_cluster"]


def find_redis_cli(server: Path) -> Path | None:
    """``redis-cli`` beside ``redis-server``, else on PATH (``$REDIS_CLI`` overrides)."""
    found = (os.environ.get("REDIS_CLI"), server.parent / "redis-cli", shutil.which("redis-cli"))
    for cand in found:
        if cand and os.access(cand, os.X_OK):
            return Path(cand)
    return None


def _info(node: RedisServer, section: str) -> dict[str, str]:
    raw = node.command("INFO", section)
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


class RedisClusterServers:
    """``masters`` masters with ``replicas`` replicas each, on free loopback ports."""

    def __init__(
        self,
        executable: Path,
        cli: Path,
        *,
        masters: int = 3,
        replicas: int = 1,
        node_timeout_ms: int = 1000,
    ) -> None:
        self.cli = cli
        self.replicas = replicas
        self.nodes: list[RedisServer] = []
        for _ in range(masters * (1 + replicas)):
            bus = free_port()
            self.nodes.append(
                RedisServer(
                    executable,
                    port=free_port(),
                    extra_args=[
                        "--cluster-enabled", "yes",
                        "--cluster-port", str(bus),
                        "--cluster-config-file", "nodes.conf",
                        "--cluster-node-timeout", str(node_timeout_ms),
                        # A replica syncs at once, not after the default 5 s gathering delay.
                        "--repl-diskless-sync-delay", "0",
                    ],
                )
            )  # fmt: skip

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}"

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        res = subprocess.run(
            [
                str(self.cli), "--cluster", "create",
                *(f"127.0.0.1:{node.port}" for node in self.nodes),
                "--cluster-replicas", str(self.replicas),
                "--cluster-yes",
            ],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        if res.returncode != 0:
            raise ServerError(f"redis-cli --cluster create failed:\n{res.stdout}\n{res.stderr}")
        self.wait_healthy()

    def masters(self) -> list[RedisServer]:
        return [n for n in self.nodes if _info(n, "replication").get("role") == "master"]

    def replica_of(self, master: RedisServer) -> RedisServer:
        info = _info(master, "replication")
        for key, value in info.items():
            found = re.search(r"port=(\d+)", value) if key.startswith("slave") else None
            if found:
                return next(n for n in self.nodes if n.port == int(found.group(1)))
        raise ServerError(f"master on port {master.port} has no replica")

    def healthy(self) -> bool:
        try:
            for node in self.nodes:
                if _info(node, "cluster").get("cluster_enabled") != "1":
                    return False
                state = node.command("CLUSTER", "INFO")
                if b"cluster_state:ok" not in state:
                    return False
                repl = _info(node, "replication")
                if repl.get("role") == "slave" and repl.get("master_link_status") != "up":
                    return False
            return len(self.masters()) == len(self.nodes) // (1 + self.replicas)
        except (OSError, ServerError):
            return False

    def wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if time.monotonic() > deadline:
                tails = "\n".join(n.log_tail(10) for n in self.nodes)
                raise ServerError(f"redis cluster not healthy after {timeout:.0f}s:\n{tails}")
            time.sleep(0.05)

    def flush(self) -> None:
        for node in self.masters():
            node.flush()
        # A replica that still shows old keys would answer nothing (reads go to masters),
        # but a later failover would bring them back: wait until every replica caught up.
        deadline = time.monotonic() + 10
        while any(_info(n, "keyspace") for n in self.nodes):
            if time.monotonic() > deadline:
                raise ServerError("replicas did not follow FLUSHALL")
            time.sleep(0.02)

    def failover(self, master: RedisServer, *, kill: bool = False) -> RedisServer:
        """``master``'s replica takes over; returns it. Manual (``CLUSTER FAILOVER`` on the
        replica: it takes over once it has everything the master acknowledged), or ``kill``:
        the master is SIGKILLed, the replica is elected after the node timeout, and the old
        master is restarted (it rejoins as the new master's replica)."""
        replica = self.replica_of(master)
        if kill:
            master.kill()
        else:
            replica.command("CLUSTER", "FAILOVER")
        deadline = time.monotonic() + 20
        while _info(replica, "replication").get("role") != "master":
            if time.monotonic() > deadline:
                raise ServerError(f"replica on port {replica.port} did not take over")
            time.sleep(0.02)
        if kill:
            master.start()
        self.wait_healthy()
        return replica

    def cleanup(self) -> None:
        for node in self.nodes:
            with contextlib.suppress(Exception):
                node.cleanup()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterServers]:
    executable = find_redis_server()
    cli = find_redis_cli(executable) if executable is not None else None
    if executable is None or cli is None:
        require_or_skip("redis-server / redis-cli not found; install redis or set REDIS_SERVER")
        raise AssertionError("unreachable")
    cluster = RedisClusterServers(executable, cli)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.cleanup()


@pytest.fixture
def cluster_url(redis_cluster: RedisClusterServers) -> str:
    for node in redis_cluster.nodes:
        node.ensure_running()
    redis_cluster.wait_healthy()
    redis_cluster.flush()
    return redis_cluster.url
