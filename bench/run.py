#!/usr/bin/env python3
"""Benchmark of the metering gateway against a static upstream, side by side (DESIGN.md §7).

    python bench/run.py                 # full run (a few minutes)
    python bench/run.py --quick         # short run (about a minute)
    python bench/run.py --production    # also production mode (private PostgreSQL + Redis)
    python bench/run.py --profile       # also a py-spy profile of the hot path

One run starts a static upstream (nginx; the built-in mock upstream when nginx cannot be had),
the gateway in embedded mode (and in production mode when asked and possible), drives load
with wrk (bench/post.lua) and a small aiohttp client for time-to-first-byte, writes
bench/results/<timestamp>.json and prints markdown tables. bench/README.md says what every
number means. Everything listens on 127.0.0.1 only; every load loop is bounded in time and
count. Nothing here imports the gateway: it is started with ``python -m gateway serve`` and set
up through its admin HTTP API, like an operator would.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import importlib.util
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
import rss_sampler  # noqa: E402  (bench/rss_sampler.py: RSS samples during the soak)
import speed  # noqa: E402  (bench/speed.py: the summary against the floor)
import where  # noqa: E402  (bench/where.py: a profile sorted into the parts of a call)

REPO = BENCH.parent
LUA = BENCH / "post.lua"
RESULTS = BENCH / "results"
PROFILES = BENCH / "profiles"
README = BENCH / "README.md"
HOST = "127.0.0.1"
ADMIN_KEY = "bench-admin-" + os.urandom(8).hex()
USER_ID = "bench"
CREDIT = "1000000"
UPSTREAM_MODEL = "gpt-4o-mini"
STREAM_CHUNKS = (20, 200)
T0 = time.monotonic()

# -- budget (the issue's numbers; DESIGN.md §7 names what is measured) ----------------------
BUDGET = {
    "added_p50_ms_c1": 0.6,  # gateway p50 - direct p50 at 1 connection, embedded
    "calls_per_s_c8": 3000.0,  # embedded, 8 connections
    "added_ttfb_ms": 1.0,  # streamed, p50 time to first byte, gateway - direct
    "rss_mb_after_100k": 150.0,  # VmRSS after 100,000 calls
}


@dataclass
class Plan:
    warmup_s: int
    measure_s: int
    concurrency: tuple[int, ...]
    stream_probe_calls: int
    stream_load_s: int
    soak_calls: int
    soak_cap_s: int
    profile_s: int
    long_s: int = 5

    @classmethod
    def make(cls, quick: bool, calls: int | None, soak_s: int | None = None) -> Plan:
        if quick:
            plan = cls(1, 3, (1, 8, 64), 200, 2, 10_000, 30, 4, 2)
        else:
            plan = cls(2, 10, (1, 8, 64), 2_000, 6, 100_000, 150, 10)
        if calls is not None:
            plan.soak_calls = calls
        if soak_s is not None:
            plan.soak_cap_s = soak_s
        return plan


def log(msg: str) -> None:
    print(f"[bench {time.monotonic() - T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


# -- small helpers ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def http(
    method: str, url: str, body: Any = None, *, key: str | None = None, timeout: float = 30.0
) -> tuple[int, bytes]:
    if body is None or isinstance(body, bytes):
        data = body
    else:
        data = json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_port(port: int, proc: subprocess.Popen | None, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
            return True
        time.sleep(0.05)
    return False


def tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


_CLK = os.sysconf("SC_CLK_TCK")


def _proc_stat(pid: int) -> tuple[int, float] | None:
    """(ppid, cpu seconds user+system) of a process."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = data[data.rfind(")") + 2 :].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _CLK


def process_tree(pid: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _proc_stat(int(entry))
            if st is not None:
                parents.setdefault(st[0], []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(parents.get(p, []))
    return out


def cpu_seconds(pids: list[int]) -> float:
    """CPU seconds of these processes and all their descendants, each process counted once."""
    seen: set[int] = set()
    for root in pids:
        seen.update(process_tree(root))
    total = 0.0
    for p in seen:
        st = _proc_stat(p)
        total += st[1] if st else 0.0
    return total


def loop_cpu_seconds(pids: list[int]) -> float:
    """CPU seconds of the main threads (the event loops) of these processes and their
    descendants: what the rest of ``cpu_seconds`` is not, the SQLite writer and other
    threads, is then known too."""
    total = 0.0
    for root in pids:
        for p in process_tree(root):
            try:
                data = Path(f"/proc/{p}/task/{p}/stat").read_text()
            except OSError:
                continue
            fields = data[data.rfind(")") + 2 :].split()
            total += (int(fields[11]) + int(fields[12])) / _CLK
    return total


OUR_PIDS: list[int] = []  # upstream and gateways, for the "other load" estimate


def machine_busy() -> float:
    """CPU seconds spent busy by the whole machine since boot (all cores), from /proc/stat."""
    return _cpu_line()[0]


def machine_steal() -> float:
    """CPU seconds the hypervisor gave to others since boot (all cores)."""
    return _cpu_line()[1]


def _cpu_line() -> tuple[float, float]:
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq) / _CLK, steal / _CLK


def memory(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM in MiB, summed over the process tree (multi-worker serving)."""
    rss = hwm = 0
    for p in process_tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss += int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    hwm += int(line.split()[1])
    return {"rss_mb": round(rss / 1024, 1), "hwm_mb": round(hwm / 1024, 1)}


def _pdeathsig() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: die with the bench
    os.setpgrp()  # a ^C on the terminal reaches the bench, which stops children in order


class Child:
    """A child process with its own log; stopped politely, then killed, by its own pid."""

    def __init__(
        self,
        name: str,
        cmd: list[str],
        logfile: Path,
        *,
        env: dict | None = None,
        cwd: Path | None = None,
        cpus: str | None = None,
    ) -> None:
        self.name, self.logfile = name, logfile
        prefix = ["taskset", "-c", cpus] if cpus and shutil.which("taskset") else []
        with open(logfile, "ab") as fh:
            self.proc = subprocess.Popen(
                prefix + cmd,
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                preexec_fn=_pdeathsig,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log(f"{self.name} did not stop in {timeout:.0f}s; killing pid {self.pid}")
                self.proc.kill()
                self.proc.wait(10)


# -- tools -----------------------------------------------------------------------------------


def find_exe(name: str) -> str | None:
    return shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.access(p, os.X_OK)), None
    )


def ensure_tools(install: bool) -> tuple[str | None, str | None, list[str]]:
    """nginx and wrk paths, installing nginx-light and wrk from Debian when root."""
    notes: list[str] = []
    nginx, wrk = find_exe("nginx"), find_exe("wrk")
    if (nginx and wrk) or not install:
        return nginx, wrk, notes
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        notes.append("nginx/wrk missing and cannot apt-get install them (not root or no apt)")
        return nginx, wrk, notes
    log("installing nginx-light and wrk with apt-get")
    # The package would start a system nginx on :80 for all interfaces; Debian's
    # policy-rc.d (exit 101) forbids service starts during the install.
    policy = Path("/usr/sbin/policy-rc.d")
    made_policy = not policy.exists()
    if made_policy:
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        for cmd in (
            ["apt-get", "install", "-y", "-q", "nginx-light", "wrk"],
            ["apt-get", "update", "-q"],
            ["apt-get", "install", "-y", "-q", "nginx-light", "wrk"],
        ):
            if cmd[1] == "update" and find_exe("nginx") and find_exe("wrk"):
                break
            r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
            if r.returncode != 0:
                notes.append(f"{' '.join(cmd)} failed: {r.stderr.strip()[-300:]}")
    except (OSError, subprocess.SubprocessError) as exc:
        notes.append(f"apt-get failed: {exc}")
    finally:
        if made_policy:
            policy.unlink(missing_ok=True)
    return find_exe("nginx"), find_exe("wrk"), notes


def tool_version(cmd: list[str]) -> str:
    with contextlib.suppress(Exception):
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        return (r.stdout + r.stderr).strip().splitlines()[0]
    return "?"


# -- request bodies and the static answers ---------------------------------------------------

MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Say hello in one short sentence."},
]


# A long prompt (about 4,300 tokens, 21 KB: a chat history or retrieved context), to show
# what costs grow with the prompt (token counting for the reservation, JSON parse/encode).
LONG_TEXT = (
    "The quick brown fox jumps over the lazy dog while the metering gateway counts tokens. "
) * 250


def request_body(model: str, chunks: int | None, long: bool = False) -> bytes:
    body: dict[str, Any] = {
        "model": model,
        "messages": [dict(m) for m in MESSAGES],
        "max_tokens": 64,
    }
    if long:
        body["messages"][-1]["content"] = LONG_TEXT + body["messages"][-1]["content"]
    if chunks is not None:
        body["stream"] = True
        # Only the mock upstream reads this directive (nginx ignores the body): N pieces.
        body["messages"][-1]["content"] += f" [[mock:chunks={chunks}]]"
    return json.dumps(body, separators=(",", ":")).encode()


def chat_completion() -> bytes:
    return json.dumps(
        {
            "id": "chatcmpl-bench0000000000000000000000",
            "object": "chat.completion",
            "created": 1764000000,
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": "Hello there, nice to meet you!",
                        "refusal": None,
                        "annotations": [],
                    },
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": 23,
                "completion_tokens": 9,
                "total_tokens": 32,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                "completion_tokens_details": {
                    "reasoning_tokens": 0,
                    "audio_tokens": 0,
                    "accepted_prediction_tokens": 0,
                    "rejected_prediction_tokens": 0,
                },
            },
            "service_tier": "default",
            "system_fingerprint": "fp_bench",
        },
        separators=(",", ":"),
    ).encode()


def sse_stream(chunks: int) -> bytes:
    """What OpenAI sends with stream_options.include_usage: a role chunk, N content chunks
    (``"usage":null`` on each), a usage-only chunk with empty choices, then [DONE]."""

    def event(choices: list, usage: Any = None) -> bytes:
        obj = {
            "id": "chatcmpl-bench0000000000000000000000",
            "object": "chat.completion.chunk",
            "created": 1764000000,
            "model": "gpt-4o-mini-2024-07-18",
            "service_tier": "default",
            "system_fingerprint": "fp_bench",
            "choices": choices,
            "usage": usage,
        }
        return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"

    def choice(delta: dict, finish: str | None = None) -> dict:
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}

    out = [event([choice({"role": "assistant", "content": "", "refusal": None})])]
    out += [event([choice({"content": f" w{i}"})]) for i in range(chunks)]
    out.append(event([choice({}, "stop")]))
    out.append(
        event(
            [],
            {
                "prompt_tokens": 26,
                "completion_tokens": chunks,
                "total_tokens": 26 + chunks,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0},
            },
        )
    )
    out.append(b"data: [DONE]\n\n")
    return b"".join(out)


# -- upstreams -------------------------------------------------------------------------------


@dataclass
class Upstream:
    kind: str  # "nginx" or "mock"
    version: str
    child: Child
    bases: dict[str, str]  # "json" / "s20" / "s200" -> base URL ending in /v1

    def url(self, route: str) -> str:
        return self.bases[route] + "/chat/completions"


def _nginx_str(data: bytes) -> str:
    text = data.decode()
    assert "$" not in text, "nginx would read $ as a variable"
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


def start_nginx(nginx: str, tmp: Path, cpus: str | None) -> Upstream:
    root = tmp / "nginx"
    for sub in ("logs", "tmp"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    port = free_port()
    locations = [
        f"    location = /v1/chat/completions {{\n"
        f"      default_type application/json;\n"
        f"      return 200 {_nginx_str(chat_completion())};\n    }}"
    ]
    # Stream bodies are longer than an nginx config parameter may be (4 KiB), so they are
    # files; the static module answers POST with 405, which error_page turns into a GET of
    # the same file with status 200.
    for n in STREAM_CHUNKS:
        body = root / f"stream{n}.txt"
        body.write_bytes(sse_stream(n))
        locations.append(
            f"    location = /s{n}/v1/chat/completions {{\n"
            f"      alias {body};\n"
            f"      default_type text/event-stream;\n"
            f"      etag off;\n"
            f"      add_header Cache-Control no-cache;\n"
            f"      error_page 405 =200 $uri;\n    }}"
        )
    temp_paths = "".join(
        f"  {d}_temp_path {root}/tmp/{d};\n"
        for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    conf = (
        "daemon off;\nmaster_process off;\nworker_processes 1;\n"
        + ("user nobody nogroup;\n" if os.geteuid() == 0 else "")
        + f"pid {root}/nginx.pid;\nerror_log {root}/logs/error.log warn;\n"
        "events { worker_connections 4096; }\n"
        "http {\n  access_log off;\n  server_tokens off;\n"
        "  keepalive_requests 100000000;\n  keepalive_timeout 300s;\n"
        f"{temp_paths}"
        f"  server {{\n    listen {HOST}:{port} backlog=4096;\n"
        + "\n".join(locations)
        + "\n    location / { return 404; }\n  }\n}\n"
    )
    (root / "nginx.conf").write_text(conf)
    # Removes the temp-path directives this nginx build lacks (nginx-light has no uwsgi/scgi).
    for _ in range(5):
        check = subprocess.run(
            [
                nginx,
                "-t",
                "-p",
                str(root),
                "-c",
                str(root / "nginx.conf"),
                "-e",
                str(root / "logs/error.log"),
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        m = re.search(r'unknown directive "(\w+_temp_path)"', check.stderr)
        if check.returncode == 0 or not m:
            break
        conf = re.sub(rf"\s*{m.group(1)} [^;]*;", "", conf)
        (root / "nginx.conf").write_text(conf)
    if check.returncode != 0:
        raise RuntimeError(f"nginx -t failed: {check.stderr.strip()[-500:]}")
    child = Child(
        "nginx",
        [
            nginx,
            "-p",
            str(root),
            "-c",
            str(root / "nginx.conf"),
            "-e",
            str(root / "logs/error.log"),
        ],
        root / "logs/stdout.log",
        cpus=cpus,
    )
    if not wait_port(port, child.proc, 15):
        child.stop()
        raise RuntimeError("nginx did not start: " + tail(root / "logs/error.log"))
    base = f"http://{HOST}:{port}"
    return Upstream(
        "nginx",
        tool_version([nginx, "-v"]),
        child,
        {"json": f"{base}/v1", **{f"s{n}": f"{base}/s{n}/v1" for n in STREAM_CHUNKS}},
    )


def start_mock(tmp: Path, cpus: str | None) -> Upstream:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": _pythonpath()}
    child = Child(
        "mock-upstream",
        [sys.executable, "-m", "gateway", "mock-upstream", "--host", HOST, "--port", str(port)],
        tmp / "mock-upstream.log",
        env=env,
        cwd=tmp,
        cpus=cpus,
    )
    if not wait_port(port, child.proc, 30):
        child.stop()
        raise RuntimeError("mock upstream did not start: " + tail(tmp / "mock-upstream.log"))
    base = f"http://{HOST}:{port}/v1"
    return Upstream(
        "mock",
        "gateway mock-upstream (aiohttp)",
        child,
        {"json": base, **{f"s{n}": base for n in STREAM_CHUNKS}},
    )


GATEWAY_SRC = REPO  # the tree whose gateway/ package is run (--gateway-src for A/B runs)


def _pythonpath() -> str:
    extra = os.environ.get("PYTHONPATH")
    return f"{GATEWAY_SRC}{os.pathsep}{extra}" if extra else str(GATEWAY_SRC)


def start_passthrough(
    tmp: Path, upstream: Upstream, models: dict[str, str], cpus: str | None
) -> Child:
    """bench/passthrough.py: the same stack with no metering, as the floor to compare with."""
    port = free_port()
    routes = {models[r]: base for r, base in upstream.bases.items()}
    env = {**os.environ, "PASSTHROUGH_ROUTES": json.dumps(routes)}
    child = Child(
        "passthrough",
        [sys.executable, str(BENCH / "passthrough.py"), str(port)],
        tmp / "passthrough.log",
        env=env,
        cwd=tmp,
        cpus=cpus,
    )
    child.port = port  # type: ignore[attr-defined]
    if not wait_port(port, child.proc, 30):
        child.stop()
        raise RuntimeError("did not start: " + tail(tmp / "passthrough.log"))
    return child


def start_floor(tmp: Path, upstream: Upstream, models: dict[str, str], cpus: str | None) -> Child:
    """bench/floor.py: a bare ASGI callable on uvicorn + aiohttp, the floor of the stack."""
    port = free_port()
    env = {
        **os.environ,
        "FLOOR_ROUTES": json.dumps({models[r]: upstream.url(r) for r in upstream.bases}),
        "FLOOR_MODEL": UPSTREAM_MODEL,
    }
    child = Child(
        "floor",
        [sys.executable, str(BENCH / "floor.py"), str(port)],
        tmp / "floor.log",
        env=env,
        cwd=tmp,
        cpus=cpus,
    )
    child.port = port  # type: ignore[attr-defined]
    if not wait_port(port, child.proc, 30):
        child.stop()
        raise RuntimeError("did not start: " + tail(tmp / "floor.log"))
    return child


# -- the gateway under test ------------------------------------------------------------------


class StartError(RuntimeError):
    pass


def models_yaml(upstream: Upstream) -> str:
    lines = ["currency: usd", "providers:"]
    for route, base in upstream.bases.items():
        lines.append(f"  static_{route}: {{base_url: {base}}}")
    lines.append("models:")
    for route in upstream.bases:
        name = "bench" if route == "json" else f"bench-{route}"
        lines += [
            f"  {name}:",
            f"    provider: static_{route}",
            f"    upstream_model: {UPSTREAM_MODEL}",
            '    price: {input: "0.15", cached_input: "0.075", output: "0.60"}',
            "    max_output_tokens: 16384",
        ]
    return "\n".join(lines) + "\n"


class Gateway:
    def __init__(
        self, mode: str, workdir: Path, env: dict[str, str], cpus: str | None, workers: int = 1
    ) -> None:
        self.mode, self.workdir = mode, workdir
        self.port = free_port()
        self.base = f"http://{HOST}:{self.port}"
        self.key = ""
        self.log = workdir / f"gateway-{mode}.log"
        full_env = {
            **os.environ,
            **env,
            "GATEWAY_ADMIN_KEY": ADMIN_KEY,
            "GATEWAY_HOST": HOST,
            "GATEWAY_PORT": str(self.port),
            "GATEWAY_SHUTDOWN_GRACE": "10",
            "PYTHONPATH": _pythonpath(),
        }
        cmd = [sys.executable, "-m", "gateway", "serve"]
        if workers > 1:
            cmd += ["--workers", str(workers)]
        self.child = Child(f"gateway-{mode}", cmd, self.log, env=full_env, cwd=workdir, cpus=cpus)
        self.calls = 0  # proxied calls sent to it by this harness

    @property
    def pid(self) -> int:
        return self.child.pid

    def fail(self, what: str) -> StartError:
        return StartError(f"{what}; gateway log tail:\n{tail(self.log)}")

    def start(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if not self.child.alive():
                raise self.fail(f"gateway exited with code {self.child.proc.returncode}")
            with contextlib.suppress(OSError):
                if http("GET", self.base + "/healthz", timeout=2)[0] == 200:
                    break
            if time.monotonic() > deadline:
                raise self.fail(f"/healthz not ready after {timeout:.0f}s")
            time.sleep(0.1)
        status, body = http(
            "POST",
            self.base + "/admin/users",
            {"id": USER_ID, "initial_credit": CREDIT},
            key=ADMIN_KEY,
        )
        if status not in (200, 201):
            raise self.fail(f"POST /admin/users answered {status}: {body[:300]!r}")
        status, body = http(
            "POST", f"{self.base}/admin/users/{USER_ID}/keys", {"name": "bench"}, key=ADMIN_KEY
        )
        if status not in (200, 201):
            raise self.fail(f"POST /admin/users/{USER_ID}/keys answered {status}: {body[:300]!r}")
        self.key = json.loads(body)["key"]

    def smoke(self, body: bytes, stream: bool) -> None:
        status, answer = http("POST", self.base + "/v1/chat/completions", body, key=self.key)
        self.calls += 1
        if status != 200:
            raise self.fail(f"smoke call answered {status}: {answer[:300]!r}")
        if stream and b"[DONE]" not in answer:
            raise self.fail(f"smoke stream has no [DONE]: {answer[-300:]!r}")
        if not stream and b'"choices"' not in answer:
            raise self.fail(f"smoke call answer is not a completion: {answer[:300]!r}")

    def backlog(self) -> int | None:
        with contextlib.suppress(Exception):
            _, body = http("GET", self.base + "/readyz", timeout=10)
            value = json.loads(body).get("usage_backlog")
            return int(value) if value is not None else None
        return None

    def stop(self) -> None:
        self.child.stop(signal.SIGTERM, timeout=30)


# -- load ------------------------------------------------------------------------------------


@dataclass
class Target:
    name: str  # "direct", "embedded", "production"
    base: str  # scheme://host:port
    key: str
    paths: dict[str, str]  # route -> path
    bodies: dict[str, Path]
    pids: list[int] = field(default_factory=list)  # processes whose CPU is charged to it
    gateway: Gateway | None = None
    server_pids: list[int] = field(default_factory=list)  # PostgreSQL, Redis

    def url(self, route: str) -> str:
        return self.base + self.paths[route]


_WRK_RUNS = Counter()


def wrk(
    wrk_exe: str,
    target: Target,
    route: str,
    conns: int,
    seconds: int,
    tmp: Path,
    *,
    limit: int = 0,
    cpus: str | None = None,
    progress: Path | None = None,
) -> dict[str, Any]:
    _WRK_RUNS[target.name] += 1
    out = tmp / f"wrk-{target.name}-{route}-c{conns}-{_WRK_RUNS[target.name]}.json"
    marker = out.with_suffix(".done")
    env = {
        **os.environ,
        "BENCH_BODY": str(target.bodies[route]),
        "BENCH_KEY": target.key,
        "BENCH_LIMIT": str(limit),
        "BENCH_OUT": str(out),
        "BENCH_DONE": str(marker),
        "BENCH_PROGRESS": str(progress or ""),
    }
    prefix = ["taskset", "-c", cpus] if cpus and shutil.which("taskset") else []
    cmd = [
        *prefix,
        wrk_exe,
        "-t",
        "1",
        "-c",
        str(conns),
        "-d",
        f"{seconds}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA),
        target.url(route),
    ]
    cpu0 = cpu_seconds(target.pids)
    loop0 = loop_cpu_seconds(target.pids)
    srv0 = cpu_seconds(target.server_pids)
    ours = sorted({os.getpid(), *target.pids, *target.server_pids, *OUR_PIDS})
    own0 = cpu_seconds(ours)
    busy0, steal0 = _cpu_line()
    kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall0 = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + seconds + 60
    while proc.poll() is None and time.monotonic() < deadline:
        if limit and marker.exists():
            proc.send_signal(signal.SIGINT)  # the count is reached: wrk prints and exits
            break
        time.sleep(0.05)
    try:
        _, stderr = proc.communicate(timeout=max(5.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        proc.kill()
        _, stderr = proc.communicate()
    wall = time.monotonic() - wall0
    cpu = cpu_seconds(target.pids) - cpu0
    loop = loop_cpu_seconds(target.pids) - loop0
    srv = cpu_seconds(target.server_pids) - srv0
    kids1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk_cpu = (kids1.ru_utime + kids1.ru_stime) - (kids0.ru_utime + kids0.ru_stime)
    own = cpu_seconds(ours) - own0
    busy1, steal1 = _cpu_line()
    other = max(0.0, busy1 - busy0 - own - wrk_cpu)
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"wrk failed ({proc.returncode}): {stderr.strip()[-500:]}")
    res = json.loads(out.read_text())
    secs = res["duration_us"] / 1e6
    n = res["requests"]
    if target.gateway is not None:
        target.gateway.calls += n
    lat = res["latency_us"]
    summary = {
        "target": target.name,
        "route": route,
        "connections": conns,
        "seconds": round(secs, 2),
        "calls": n,
        "calls_per_s": round(n / secs, 1) if secs else 0.0,
        "p50_ms": lat["p50"] / 1000,
        "p90_ms": lat["p90"] / 1000,
        "p99_ms": lat["p99"] / 1000,
        "p999_ms": lat["p999"] / 1000,
        "mean_ms": round(lat["mean"] / 1000, 3),
        "max_ms": lat["max"] / 1000,
        "errors": sum(res["errors"].values()),
        "error_detail": res["errors"],
        "cpu_us_per_call": round(cpu / n * 1e6, 1) if n and target.pids else None,
        "loop_cpu_us_per_call": round(loop / n * 1e6, 1) if n and target.pids else None,
        "cpu_util": round(cpu / secs, 2) if secs and target.pids else None,
        "wrk_cpu_util": round(wrk_cpu / wall, 2) if wall else None,
        # CPU used meanwhile by processes that are not part of this benchmark (other work on
        # the machine), in cores: a cell with a high number is noisy.
        "other_load_cores": round(other / wall, 2) if wall else None,
        "steal_cores": round((steal1 - steal0) / wall, 2) if wall else None,
    }
    if target.server_pids:
        summary["servers_cpu_us_per_call"] = round(srv / n * 1e6, 1) if n else None
    return summary


async def _stream_probe(url: str, body: bytes, key: str, calls: int, warm: int) -> dict:
    import aiohttp

    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    ttfh, ttfb, total, sizes, bad = [], [], [], [], 0
    deadline = time.monotonic() + 120  # bounded in time as well as in count
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector) as session:
        for i in range(warm + calls):
            if time.monotonic() > deadline:
                break
            t0 = time.perf_counter()
            async with session.post(url, data=body, headers=headers) as resp:
                t_head = time.perf_counter()
                first, size, last = None, 0, b""
                async for chunk in resp.content.iter_any():
                    if first is None:
                        first = time.perf_counter()
                    size += len(chunk)
                    last = (last + chunk)[-64:]
                t_end = time.perf_counter()
            if resp.status != 200 or b"[DONE]" not in last or first is None:
                bad += 1
                continue
            if i >= warm:
                ttfh.append(t_head - t0)
                ttfb.append(first - t0)
                total.append(t_end - t0)
                sizes.append(size)

    def pct(xs: list[float], q: float) -> float | None:
        if not xs:
            return None
        xs = sorted(xs)
        return round(xs[min(len(xs) - 1, int(q * len(xs)))] * 1000, 3)

    return {
        "calls": len(ttfb),
        "bad": bad,
        "headers_p50_ms": pct(ttfh, 0.5),
        "ttfb_p50_ms": pct(ttfb, 0.5),
        "ttfb_p99_ms": pct(ttfb, 0.99),
        "total_p50_ms": pct(total, 0.5),
        "total_p99_ms": pct(total, 0.99),
        "ttfb_mean_ms": round(statistics.fmean(ttfb) * 1000, 3) if ttfb else None,
        "bytes": sizes[0] if sizes else 0,
    }


def stream_probe(target: Target, route: str, calls: int) -> dict:
    res = asyncio.run(
        _stream_probe(
            target.url(route),
            target.bodies[route].read_bytes(),
            target.key,
            calls,
            warm=min(50, calls // 4 + 1),
        )
    )
    if target.gateway is not None:
        target.gateway.calls += res["calls"] + res["bad"] + min(50, calls // 4 + 1)
    return {"target": target.name, "route": route, **res}


def hold(targets: list[Target], tmp: Path) -> None:
    """Print how to drive every target with wrk by hand, then wait for ^C (--hold)."""
    print("\nEverything is up. Drive it with wrk yourself, for example:\n")
    for t in targets:
        env = f"BENCH_BODY={t.bodies['json']} BENCH_OUT=/tmp/wrk-{t.name}.json"
        if t.key:
            env += f" BENCH_KEY={t.key}"
        print(f"# {t.name}")
        for conns in (1, 8):
            print(f"{env} wrk -t1 -c{conns} -d10s --timeout 10s -s {LUA} {t.url('json')}")
        print()
    print("CPU per call: read utime+stime of the pids below from /proc/<pid>/stat (and their")
    print("children) before and after, divide by the calls wrk reports.")
    for t in targets:
        print(f"  {t.name}: pids {t.pids} servers {t.server_pids}")
    print(f"\nwork dir {tmp}; ^C stops everything.")
    with contextlib.suppress(KeyboardInterrupt):
        while True:
            time.sleep(3600)


# -- production mode (private PostgreSQL + Redis from tests/support/servers.py) --------------


def start_production(
    tmp: Path, upstream_env: dict[str, str], cpus_gw: str | None, cpus_srv: str | None, workers: int
) -> tuple[Gateway, list, list[int]]:
    path = REPO / "tests" / "support" / "servers.py"
    spec = importlib.util.spec_from_file_location("bench_servers", path)
    if spec is None or spec.loader is None:
        raise StartError(f"cannot load {path}")
    servers = importlib.util.module_from_spec(spec)
    sys.modules["bench_servers"] = servers
    spec.loader.exec_module(servers)
    started: list = []
    try:
        # base_dir None: the system temp dir, which the postgres user (when we are root) can
        # traverse; our own temp dir is 0700.
        pg = servers.PostgresServer()
        started.append(pg)
        pg.start()
        # like a production Redis: AOF fsynced once a second (the tests use "always")
        redis = servers.RedisServer(appendfsync="everysec")
        started.append(redis)
        redis.start()
        dsn = pg.create_database("gateway_bench")
    except Exception as exc:
        for s in started:
            with contextlib.suppress(Exception):
                s.cleanup()
        raise StartError(f"private PostgreSQL/Redis could not start: {exc}") from exc
    if cpus_srv:
        for s in started:
            for p in process_tree(s.proc.pid):
                subprocess.run(
                    ["taskset", "-pc", cpus_srv, str(p)], capture_output=True, check=False
                )
    env = {**upstream_env, "GATEWAY_DATABASE_URL": dsn, "GATEWAY_REDIS_URL": redis.url}
    gw = Gateway("production", tmp, env, cpus_gw, workers=workers)
    return gw, started, [s.proc.pid for s in started]


# -- profile ---------------------------------------------------------------------------------


def find_py_spy(install: bool) -> str | None:
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if os.access(exe, os.X_OK):
        return exe
    if install:
        log("installing py-spy with pip")
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "py-spy"],
            capture_output=True,
            timeout=300,
            check=False,
        )
        exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if os.access(exe, os.X_OK):
            return exe
    return None


def analyse_collapsed(path: Path, top: int = 30) -> dict[str, Any]:
    """Own time and inclusive time per frame from py-spy's collapsed ("raw") stacks."""
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    by_pkg: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += n
        own[frames[-1]] += n
        by_pkg[_package(frames[-1])] += n
        for f in set(frames):
            incl[f] += n

    def rows(c: Counter[str]) -> list[dict[str, Any]]:
        return [
            {"frame": f, "samples": n, "pct": round(100 * n / total, 1)}
            for f, n in c.most_common(top)
        ]

    gateway_incl = Counter(
        {
            f: n
            for f, n in incl.items()
            if "gateway/" in f and not f.startswith(("<module>", "main ", "_serve ", "serve "))
        }
    )
    return {
        "samples": total,
        "own": rows(own),
        "inclusive": rows(incl),
        "inclusive_gateway": rows(gateway_incl),
        "own_by_package": rows(by_pkg),
    }


def _package(frame: str) -> str:
    m = re.search(r"\(([^):]+)", frame)
    where = m.group(1) if m else frame
    if "/gateway/" in where or where.startswith("gateway/"):
        return "gateway/" + where.split("gateway/", 1)[1]
    for pkg in (
        "starlette",
        "uvicorn",
        "aiohttp",
        "asyncio",
        "uvloop",
        "httptools",
        "orjson",
        "tiktoken",
        "logging",
        "uuid",
        "json",
        "ssl",
    ):
        if f"/{pkg}/" in where or f"{pkg}/" in where[: len(pkg) + 1] or where == f"{pkg}.py":
            return pkg
    return Path(where).name or where


def run_profile(
    py_spy: str,
    wrk_exe: str,
    target: Target,
    seconds: int,
    tmp: Path,
    stamp: str,
    cpus: str | None,
    native: bool = False,
    route: str = "json",
    conns: int = 8,
) -> dict[str, Any]:
    PROFILES.mkdir(exist_ok=True)
    out: dict[str, Any] = {
        "seconds": seconds,
        "connections": conns,
        "rate_hz": 200,
        "files": {},
        "native": native,
        "target": target.name,
        "route": route,
    }
    tag = ("-native" if native else "") + ("" if route == "json" else f"-{route}")
    for fmt, ext in (("raw", "collapsed.txt"), ("flamegraph", "svg")):
        dest = PROFILES / f"{stamp}-{target.name}-c{conns}{tag}.{ext}"
        spy = subprocess.Popen(
            [
                py_spy,
                "record",
                "--pid",
                str(target.pids[0]),
                "--rate",
                "200",
                "--duration",
                str(seconds + 1),
                "--format",
                fmt,
                "--output",
                str(dest),
                *(["--native"] if native else []),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        time.sleep(0.7)
        res = wrk(wrk_exe, target, route, conns, seconds, tmp, cpus=cpus)
        try:
            spy_out, _ = spy.communicate(timeout=seconds + 30)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy_out, _ = spy.communicate()
        if spy.returncode != 0 or not dest.exists():
            out["error"] = f"py-spy failed ({spy.returncode}): {spy_out.strip()[-400:]}"
            return out
        out["files"][fmt] = str(dest.relative_to(REPO))
        out[f"load_{fmt}"] = {k: res[k] for k in ("calls_per_s", "p50_ms", "p99_ms", "errors")}
        if fmt == "raw":
            out["analysis"] = analyse_collapsed(dest)
            out["where"] = where.render(where.read(dest))
    summary = PROFILES / f"{stamp}-{target.name}-c{conns}{tag}.top.txt"
    summary.write_text(render_profile(out))
    out["files"]["top"] = str(summary.relative_to(REPO))
    return out


def render_profile(prof: dict[str, Any]) -> str:
    a = prof.get("analysis")
    if not a:
        return prof.get("error", "no profile") + "\n"
    what = {
        "json": "non-streamed chat completion",
        "long": "non-streamed, ~4,300-token prompt",
    }.get(prof.get("route", "json"), f"streamed chat completion ({prof.get('route')})")
    lines = [
        f"py-spy {prof['rate_hz']} Hz, {prof['seconds']} s, {prof.get('target', '')} "
        f"gateway, wrk {prof.get('connections', 8)} connections, {what}; "
        f"{a['samples']} samples (idle excluded)",
        f"load while sampling: {prof.get('load_raw')}",
        "",
        "own time by package:",
    ]
    lines += [f"  {r['pct']:5.1f}%  {r['frame']}" for r in a["own_by_package"]]
    if prof.get("where"):
        lines += ["", "where the samples go (bench/where.py):", "", prof["where"]]
    lines += ["", "own time by frame:"]
    lines += [f"  {r['pct']:5.1f}%  {r['frame']}" for r in a["own"]]
    lines += ["", "inclusive time, gateway frames:"]
    lines += [f"  {r['pct']:5.1f}%  {r['frame']}" for r in a["inclusive_gateway"]]
    lines += ["", "inclusive time by frame:"]
    lines += [f"  {r['pct']:5.1f}%  {r['frame']}" for r in a["inclusive"]]
    return "\n".join(lines) + "\n"


# -- hooks: settlement and reports -----------------------------------------------------------
# Later work plugs in here (production settlement through the Redis stream, report queries
# over a large ledger). Each hook takes the context and returns a JSON-able dict.


def hook_settlement(ctx: dict[str, Any]) -> dict[str, Any]:
    """How the usage writer keeps up: backlog when the soak ended and time to drain it."""
    return ctx.get("settlement", {"note": "no soak ran"})


REPORT_QUERIES = [
    ("admin user usage (50)", "admin", f"/admin/users/{USER_ID}/usage?limit=50"),
    ("admin user usage offset 50k", "admin", f"/admin/users/{USER_ID}/usage?limit=50&offset=50000"),
    ("admin user stats", "admin", f"/admin/users/{USER_ID}/stats"),
    ("admin revenue report", "admin", "/admin/reports/revenue"),
    ("admin models report", "admin", "/admin/reports/models"),
    ("admin top users", "admin", "/admin/reports/top-users?limit=10"),
    ("me", "user", "/me"),
    ("me usage (50)", "user", "/me/usage?limit=50"),
    ("me stats", "user", "/me/stats"),
]


def hook_reports(ctx: dict[str, Any]) -> dict[str, Any]:
    """Timings of report/usage queries over the ledger the soak filled (median of 5), per
    gateway mode."""
    gateways: list[Gateway] = ctx.get("gateways", [])
    if not gateways:
        return {"note": "no gateway"}
    out: dict[str, Any] = {}
    for gw in gateways:
        queries = {}
        for name, who, path in REPORT_QUERIES:
            key = ADMIN_KEY if who == "admin" else gw.key
            times, status = [], None
            for _ in range(5):
                t0 = time.perf_counter()
                status, _ = http("GET", gw.base + path, key=key, timeout=60)
                times.append(time.perf_counter() - t0)
                if status in (404, 405, 500):
                    break
            queries[name] = {
                "path": path,
                "status": status,
                "median_ms": round(statistics.median(times) * 1000, 2),
            }
        out[gw.mode] = {"ledger_calls": gw.calls, "queries": queries}
    return out


HOOKS = {"settlement": hook_settlement, "reports": hook_reports}


# -- report ----------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    commit = dirty = None
    with contextlib.suppress(Exception):
        commit = (
            subprocess.run(
                ["git", "-C", str(GATEWAY_SRC), "rev-parse", "--short", "HEAD"],
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout.strip()
            or None
        )
        dirty = bool(
            subprocess.run(
                [
                    "git",
                    "-C",
                    str(GATEWAY_SRC),
                    "--no-optional-locks",
                    "status",
                    "--porcelain",
                    "gateway",
                ],
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout.strip()
        )
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory": mem,
        "gateway_src": str(GATEWAY_SRC),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg_start": Path("/proc/loadavg").read_text().split()[:3],
        "git_commit": commit,
        "gateway_tree_dirty": dirty,
    }


def _f(v: Any, digits: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def evaluate_budget(res: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    thr = {(r["target"], r["connections"]): r for r in res.get("throughput", [])}
    d1, e1 = thr.get(("direct", 1)), thr.get(("embedded", 1))
    if d1 and e1:
        added = round(e1["p50_ms"] - d1["p50_ms"], 3)
        rows.append(
            {
                "check": "added latency p50 at 1 connection (embedded)",
                "value": f"{added:.3f} ms",
                "budget": f"≤ {BUDGET['added_p50_ms_c1']} ms",
                "ok": added <= BUDGET["added_p50_ms_c1"],
            }
        )
    e8 = thr.get(("embedded", 8))
    if e8:
        rows.append(
            {
                "check": "calls/s at 8 connections (embedded)",
                "value": f"{e8['calls_per_s']:,.0f}",
                "budget": f"≥ {BUDGET['calls_per_s_c8']:,.0f}",
                "ok": e8["calls_per_s"] >= BUDGET["calls_per_s_c8"] and not e8["errors"],
            }
        )
    probes = {p["target"]: p for p in res.get("stream_probe", [])}
    if "direct" in probes and "embedded" in probes and probes["embedded"]["ttfb_p50_ms"]:
        added = round(probes["embedded"]["ttfb_p50_ms"] - probes["direct"]["ttfb_p50_ms"], 3)
        rows.append(
            {
                "check": "streamed added TTFB p50, 20 chunks (embedded)",
                "value": f"{added:.3f} ms",
                "budget": f"≤ {BUDGET['added_ttfb_ms']} ms",
                "ok": added <= BUDGET["added_ttfb_ms"],
            }
        )
    mem = res.get("memory", {}).get("embedded")
    if mem and mem.get("after"):
        calls = mem["calls_total"]
        rows.append(
            {
                "check": f"RSS after {calls:,} calls (embedded)",
                "value": f"{mem['after']['rss_mb']:.1f} MB",
                "budget": f"≤ {BUDGET['rss_mb_after_100k']:.0f} MB"
                + (" (issue 15: after 1M calls)" if mem["calls_total"] >= 1_000_000 else ""),
                "ok": mem["after"]["rss_mb"] <= BUDGET["rss_mb_after_100k"]
                if calls >= 100_000
                else None,
            }
        )
    return rows


def render(res: dict[str, Any]) -> str:
    m = res["machine"]
    up = res["upstream"]
    out = [
        f"### Run {res['started']} ({res['mode']})",
        "",
        f"Machine: {m['nproc']} x {m['cpu']}, {m['memory']} RAM, Linux {m['kernel']}, "
        f"Python {m['python']}, load average at start {' '.join(m['loadavg_start'])}; "
        f"gateway at {m['git_commit']}{' (+ local changes)' if m['gateway_tree_dirty'] else ''}."
        f" Upstream: {up['kind']} ({up['version']}). Load: wrk, 1 thread. "
        f"CPU pinning: {res['pinning'] or 'none'}.",
        "",
    ]
    if res.get("speed_summary"):
        out += [speed.render(res)]
    direct = {r["connections"]: r for r in res["throughput"] if r["target"] == "direct"}
    if res["throughput"]:
        out += [
            "Non-streamed chat completion (wrk, "
            f"{res['plan']['measure_s']} s per cell after {res['plan']['warmup_s']} s warm-up):",
            "",
            "| target | conns | calls/s | p50 ms | p99 ms | added p50 ms | gateway CPU µs/call "
            "| errors | other load |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in res["throughput"]:
            d = direct.get(r["connections"])
            added = r["p50_ms"] - d["p50_ms"] if d and r["target"] != "direct" else None
            cpu = r["cpu_us_per_call"]
            if r.get("servers_cpu_us_per_call") is not None:
                cpu = f"{_f(cpu, 0)} (+{_f(r['servers_cpu_us_per_call'], 0)} PG/Redis)"
            out.append(
                f"| {r['target']} | {r['connections']} | {_f(r['calls_per_s'], 0)} | "
                f"{_f(r['p50_ms'], 3)} | {_f(r['p99_ms'], 3)} | {_f(added, 3)} | "
                f"{_f(cpu, 0)} | {r['errors']} | {_f(r.get('other_load_cores'), 2)} |"
            )
    if res.get("long_prompt"):
        dlong = {r["connections"]: r for r in res["long_prompt"] if r["target"] == "direct"}
        out += [
            "",
            f"Long prompt (~4,300 tokens, {len(LONG_TEXT) // 1000} KB body), non-streamed:",
            "",
            "| target | conns | calls/s | p50 ms | p99 ms | added p50 ms | gateway CPU µs/call "
            "| errors | other load |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in res["long_prompt"]:
            d = dlong.get(r["connections"])
            added = r["p50_ms"] - d["p50_ms"] if d and r["target"] != "direct" else None
            out.append(
                f"| {r['target']} | {r['connections']} | {_f(r['calls_per_s'], 0)} | "
                f"{_f(r['p50_ms'], 3)} | {_f(r['p99_ms'], 3)} | {_f(added, 3)} | "
                f"{_f(r['cpu_us_per_call'], 0)} | {r['errors']} | "
                f"{_f(r.get('other_load_cores'), 2)} |"
            )
    if res.get("stream_probe"):
        dp = next((p for p in res["stream_probe"] if p["target"] == "direct"), None)
        out += [
            "",
            f"Streamed, {STREAM_CHUNKS[0]} chunks + usage chunk + [DONE], one call at a "
            "time (aiohttp client, "
            f"{res['plan']['stream_probe_calls']} calls):",
            "",
            "| target | TTFB p50 ms | TTFB p99 ms | total p50 ms | total p99 ms | "
            "added TTFB p50 ms | added total p50 ms |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for p in res["stream_probe"]:
            at = ad = None
            if dp and p is not dp and p["ttfb_p50_ms"] is not None:
                at = p["ttfb_p50_ms"] - dp["ttfb_p50_ms"]
                ad = p["total_p50_ms"] - dp["total_p50_ms"]
            out.append(
                f"| {p['target']} | {_f(p['ttfb_p50_ms'], 3)} | {_f(p['ttfb_p99_ms'], 3)} "
                f"| {_f(p['total_p50_ms'], 3)} | {_f(p['total_p99_ms'], 3)} | "
                f"{_f(at, 3)} | {_f(ad, 3)} |"
            )
    if res.get("stream_load"):
        out += [
            "",
            "Streamed under load (wrk, 8 connections):",
            "",
            "| target | chunks | calls/s | p50 ms | p99 ms | gateway CPU µs/call | errors "
            "| other load |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in res["stream_load"]:
            out.append(
                f"| {r['target']} | {r['route'][1:]} | {_f(r['calls_per_s'], 0)} | "
                f"{_f(r['p50_ms'], 3)} | {_f(r['p99_ms'], 3)} | "
                f"{_f(r['cpu_us_per_call'], 0)} | {r['errors']} | "
                f"{_f(r.get('other_load_cores'), 2)} |"
            )
        for name, v in res.get("per_chunk_cpu_us", {}).items():
            out.append(
                f"\nPer-chunk gateway CPU ({name}): {_f(v, 2)} µs "
                f"(CPU/call at {STREAM_CHUNKS[1]} chunks - at {STREAM_CHUNKS[0]}, "
                f"÷ {STREAM_CHUNKS[1] - STREAM_CHUNKS[0]})."
            )
    if res.get("memory"):
        out += [
            "",
            "Gateway memory (VmRSS from /proc/<pid>/status):",
            "",
            "| mode | idle RSS MB | calls | RSS after MB | peak (VmHWM) MB | RSS after drain MB |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for mode, mem in res["memory"].items():
            after, drained = mem.get("after") or {}, mem.get("after_drain") or {}
            out.append(
                f"| {mode} | {_f(mem['idle']['rss_mb'], 1)} | {_f(mem.get('calls_total'))} "
                f"| {_f(after.get('rss_mb'), 1)} | {_f(after.get('hwm_mb'), 1)} | "
                f"{_f(drained.get('rss_mb'), 1)} |"
            )
        out += rss_curves(res["memory"])
    if res.get("production_note"):
        out += ["", f"Production mode: {res['production_note']}"]
    hooks = res.get("hooks", {})
    for mode, st in (hooks.get("settlement") or {}).items():
        if isinstance(st, dict) and "drain_s" in st:
            out += [
                "",
                f"Settlement ({mode}): usage backlog {st.get('backlog_at_end')} records "
                f"when the soak ended (`/readyz` usage_backlog), drained in "
                f"{_f(st.get('drain_s'), 2)} s.",
            ]
    reports = {
        m: v
        for m, v in (hooks.get("reports") or {}).items()
        if isinstance(v, dict) and "queries" in v
    }
    if reports:
        modes = list(reports)
        out += [
            "",
            "Report queries after the soak (median of 5, ms; status 404 = not built "
            "yet, 500 = failing):",
            "",
            "| query | " + " | ".join(f"{m} calls in ledger | {m} ms" for m in modes) + " |",
            "|---|" + "---:|---:|" * len(modes),
        ]
        for name, _, path in REPORT_QUERIES:
            cells = []
            for m in modes:
                q = reports[m]["queries"].get(name, {})
                cells.append(
                    f"{_f(reports[m]['ledger_calls'])} | "
                    f"{_f(q.get('median_ms'), 2)} ({q.get('status')})"
                )
            out.append(f"| {name} `{path}` | " + " | ".join(cells) + " |")
    if res.get("budget"):
        out += ["", "Budget:", "", "| check | measured | budget | met |", "|---|---:|---|---|"]
        for b in res["budget"]:
            ok = "n/a (fewer calls)" if b["ok"] is None else ("yes" if b["ok"] else "**no**")
            out.append(f"| {b['check']} | {b['value']} | {b['budget']} | {ok} |")
    if res.get("notes"):
        out += ["", "Notes:"] + [f"- {n}" for n in res["notes"]]
    return "\n".join(out) + "\n"


def rss_curves(memory: dict[str, Any]) -> list[str]:
    """Markdown lines: each soak's sampled RSS (start, end, peak, last quarter's growth)."""
    out = []
    for mode, mem in memory.items():
        c = mem.get("curve")
        if not c:
            continue
        flat = {True: "flat", False: "**growing**", None: "too few samples"}[c["flat"]]
        out += [
            "",
            f"RSS during the {mode} soak ({c['samples']} samples, every ~10 s): start "
            f"{c['start_mb']:.1f} MB, end {c['end_mb']:.1f} MB, peak {c['peak_mb']:.1f} MB; "
            f"last quarter (from {c['last_quarter_from_s']:.0f} s) "
            f"{c['last_quarter_growth_mb']:+.1f} MB: {flat}.",
        ]
    return out


def update_readme(table: str, result_file: Path) -> None:
    begin, end = "<!-- latest-run:begin -->", "<!-- latest-run:end -->"
    if not README.exists():
        return
    text = README.read_text()
    if begin not in text or end not in text:
        return
    block = (
        f"{begin}\n_Written by `bench/run.py` from "
        f"`{result_file.relative_to(REPO)}`._\n\n{table}{end}"
    )
    text = text[: text.index(begin)] + block + text[text.index(end) + len(end) :]
    README.write_text(text)


# -- the run ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="short cells and 10,000 soak calls")
    ap.add_argument(
        "--calls",
        type=int,
        help="soak calls for the RSS measurement (default 100,000; 10,000 with --quick)",
    )
    ap.add_argument(
        "--soak-seconds",
        type=int,
        help="time cap of each gateway's soak (default 150; 30 with --quick)",
    )
    ap.add_argument(
        "--production",
        action="store_true",
        help="also production mode (private PostgreSQL + Redis); fails cleanly",
    )
    ap.add_argument("--prod-workers", type=int, default=1, help="gateway processes in production")
    ap.add_argument(
        "--profile",
        action="store_true",
        help="py-spy profile of a gateway at 8 connections -> bench/profiles/",
    )
    ap.add_argument("--profile-only", action="store_true", help="only the profile")
    ap.add_argument(
        "--profile-mode",
        choices=("embedded", "production", "floor"),
        default="embedded",
        help="which process to profile (production needs --production)",
    )
    ap.add_argument(
        "--profile-route",
        choices=("json", "long", "s20", "s200"),
        default="json",
        help="which call to profile: non-streamed (json), long prompt, or a stream",
    )
    ap.add_argument(
        "--profile-conns", type=int, default=8, help="connections while profiling (default 8)"
    )
    ap.add_argument(
        "--profile-native",
        action="store_true",
        help="py-spy --native: C frames too (uvloop, sqlite3, syscalls)",
    )
    ap.add_argument("--upstream", choices=("auto", "nginx", "mock"), default="auto")
    ap.add_argument(
        "--no-install", action="store_true", help="never apt-get/pip install missing tools"
    )
    ap.add_argument(
        "--gateway-src",
        type=Path,
        default=REPO,
        help="run the gateway package from this source tree (A/B comparisons)",
    )
    ap.add_argument(
        "--phases",
        default="speed,throughput,long,stream,soak,hooks",
        help="comma list of phases (default: speed,throughput,long,stream,soak,hooks)",
    )
    ap.add_argument("--conns", help="comma list of connection counts (default 1,8,64)")
    ap.add_argument("--seconds", type=int, help="seconds per measured cell (default 10; 3 quick)")
    ap.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="interleaved rounds of the speed phase (floor vs gateways at 1 and 8 conns)",
    )
    ap.add_argument(
        "--hold",
        action="store_true",
        help="start everything, print the URLs, keys and wrk commands, and wait for ^C",
    )
    ap.add_argument(
        "--passthrough",
        action="store_true",
        help="also the Starlette pass-through (bench/passthrough.py) in the other phases",
    )
    ap.add_argument(
        "--no-passthrough",
        action="store_true",
        help="skip the bare pass-through reference (bench/passthrough.py)",
    )
    ap.add_argument(
        "--pin", action="store_true", help="pin the gateway to CPU 0, everything else to CPU 1"
    )
    ap.add_argument(
        "--no-readme",
        action="store_true",
        help="do not rewrite the latest-run section of bench/README.md",
    )
    args = ap.parse_args(argv)
    global GATEWAY_SRC
    GATEWAY_SRC = args.gateway_src.resolve()
    if not (GATEWAY_SRC / "gateway" / "__main__.py").exists():
        ap.error(f"--gateway-src {GATEWAY_SRC}: no gateway/__main__.py there")
    phases = {p.strip() for p in args.phases.split(",") if p.strip()}
    plan = Plan.make(args.quick, args.calls, args.soak_seconds)
    if args.conns:
        plan.concurrency = tuple(int(c) for c in args.conns.split(","))
    if args.seconds:
        plan.measure_s = plan.stream_load_s = args.seconds
    full_run = (
        phases >= {"speed", "throughput", "long", "stream", "soak", "hooks"}
        and GATEWAY_SRC == REPO
        and not args.conns
        and not args.seconds
        and not args.calls
        and not args.soak_seconds
    )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    mode = ("quick" if args.quick else "full") + ("+production" if args.production else "")
    cpus_gw = cpus_rest = None
    if args.pin and (os.cpu_count() or 1) >= 2:
        cpus_gw, cpus_rest = "0", "1"
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {1})
    res: dict[str, Any] = {
        "started": stamp,
        "mode": mode,
        "plan": asdict(plan),
        "machine": machine(),
        "budget_targets": BUDGET,
        "notes": [],
        "pinning": (f"gateway cpu{cpus_gw}, rest cpu{cpus_rest}" if cpus_gw else None),
        "speed": [],
        "throughput": [],
        "long_prompt": [],
        "stream_probe": [],
        "stream_load": [],
        "memory": {},
        "hooks": {},
    }
    nginx, wrk_exe, notes = ensure_tools(not args.no_install)
    res["notes"] += notes
    if wrk_exe is None:
        print("bench: wrk is required (apt-get install wrk); " + "; ".join(notes), file=sys.stderr)
        return 2
    res["machine"]["wrk"] = tool_version([wrk_exe, "-v"])
    tmp = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    children: list[Any] = []
    servers: list[Any] = []
    ctx: dict[str, Any] = {}
    try:
        # upstream
        upstream = None
        if args.upstream in ("auto", "nginx") and nginx:
            try:
                upstream = start_nginx(nginx, tmp, cpus_rest)
            except Exception as exc:
                if args.upstream == "nginx":
                    raise
                res["notes"].append(f"nginx failed ({exc}); using the built-in mock upstream")
        elif args.upstream != "mock":
            res["notes"].append("nginx not available; using the built-in mock upstream")
        if upstream is None:
            upstream = start_mock(tmp, cpus_rest)
            res["notes"].append(
                "upstream is the Python mock: direct numbers are the mock's, not a static server's"
            )
        children.append(upstream.child)
        OUR_PIDS.append(upstream.child.pid)
        res["upstream"] = {"kind": upstream.kind, "version": upstream.version}
        log(f"upstream: {upstream.kind} at {upstream.bases['json']}")

        routes = ["json", *(f"s{n}" for n in STREAM_CHUNKS)]
        bodies_dir = tmp / "bodies"
        bodies_dir.mkdir()

        def bodies(prefix: str, model_for: dict[str, str]) -> dict[str, Path]:
            out = {}
            for route in [*routes, "long"]:
                chunks = None if route in ("json", "long") else int(route[1:])
                p = bodies_dir / f"{prefix}-{route}.json"
                p.write_bytes(
                    request_body(
                        model_for.get(route, model_for["json"]), chunks, long=route == "long"
                    )
                )
                out[route] = p
            return out

        from urllib.parse import urlparse

        direct = Target(
            "direct",
            "",
            "",
            {},
            bodies("direct", dict.fromkeys(routes, UPSTREAM_MODEL)),
            pids=[upstream.child.pid],
        )
        u = urlparse(upstream.bases["json"])
        direct.base = f"{u.scheme}://{u.netloc}"
        direct.paths = {r: urlparse(upstream.url(r)).path for r in routes}
        direct.paths["long"] = direct.paths["json"]
        gw_models = {r: "bench" if r == "json" else f"bench-{r}" for r in routes}
        gw_paths = dict.fromkeys([*routes, "long"], "/v1/chat/completions")
        models_path = tmp / "models.yaml"
        models_path.write_text(models_yaml(upstream))
        upstream_env = {"GATEWAY_MODELS": str(models_path)}

        # embedded gateway
        gw = Gateway(
            "embedded",
            tmp,
            {**upstream_env, "GATEWAY_DATABASE_URL": f"sqlite:///{tmp}/gw.db"},
            cpus_gw,
        )
        children.append(gw)
        OUR_PIDS.append(gw.pid)
        gw.start()
        idle = memory(gw.pid)
        emb = Target(
            "embedded",
            gw.base,
            gw.key,
            gw_paths,
            bodies("gw", gw_models),
            pids=[gw.pid],
            gateway=gw,
        )
        for r in routes:
            gw.smoke(emb.bodies[r].read_bytes(), stream=r != "json")
        res["memory"]["embedded"] = {"idle": idle}
        log(f"embedded gateway ready at {gw.base} (pid {gw.pid}, idle RSS {idle['rss_mb']} MB)")
        targets = [direct]
        floor = None
        try:
            fl = start_floor(tmp, upstream, gw_models, cpus_gw)
            children.append(fl)
            OUR_PIDS.append(fl.pid)
            floor = Target(
                "floor",
                f"http://{HOST}:{fl.port}",
                "",
                gw_paths,
                emb.bodies,
                pids=[fl.pid],
            )
            targets.append(floor)
        except Exception as exc:
            res["notes"].append(f"floor not measured: {exc}")
        if args.passthrough and not args.no_passthrough:
            try:
                pt = start_passthrough(tmp, upstream, gw_models, cpus_gw)
                children.append(pt)
                OUR_PIDS.append(pt.pid)
                targets.append(
                    Target(
                        "passthrough",
                        f"http://{HOST}:{pt.port}",
                        "",
                        gw_paths,
                        emb.bodies,
                        pids=[pt.pid],
                    )
                )
            except Exception as exc:
                res["notes"].append(f"bare pass-through not measured: {exc}")
        targets.append(emb)

        # production gateway (optional; may fail cleanly)
        if args.production:
            prod_gw = None
            try:
                prod_gw, servers, server_pids = start_production(
                    tmp, upstream_env, cpus_gw, cpus_rest, args.prod_workers
                )
                children.append(prod_gw)
                OUR_PIDS.extend([prod_gw.pid, *server_pids])
                prod_gw.start()
                prod_idle = memory(prod_gw.pid)
                prod = Target(
                    "production",
                    prod_gw.base,
                    prod_gw.key,
                    gw_paths,
                    emb.bodies,
                    pids=[prod_gw.pid],
                    gateway=prod_gw,
                    server_pids=server_pids,
                )
                for r in routes:
                    prod_gw.smoke(prod.bodies[r].read_bytes(), stream=r != "json")
                res["memory"]["production"] = {"idle": prod_idle}
                targets.append(prod)
                log(f"production gateway ready at {prod_gw.base}")
            except Exception as exc:
                note = f"not measured: {exc}"
                res["production_note"] = note.strip()
                log("production mode unavailable: " + str(exc).splitlines()[0])
                if prod_gw is not None:
                    prod_gw.stop()
                    children.remove(prod_gw)
                for s in servers:
                    with contextlib.suppress(Exception):
                        s.cleanup()
                servers = []
        elif not args.production:
            res["production_note"] = "not requested (use --production)"

        if args.hold:
            hold(targets, tmp)
            return 0

        if not args.profile_only:
            # 0. speed against the floor: direct, floor, gateways at 1 and 8 connections,
            # interleaved, in rounds (ratios are taken within a round)
            speed_targets = targets
            for rnd in range(args.rounds if "speed" in phases else 0):
                for conns in (1, 8):
                    for t in speed_targets:
                        wrk(wrk_exe, t, "json", conns, plan.warmup_s, tmp, cpus=cpus_rest)
                        r = wrk(wrk_exe, t, "json", conns, plan.measure_s, tmp, cpus=cpus_rest)
                        r["round"] = rnd
                        res["speed"].append(r)
                        log(
                            f"round {rnd} {t.name:10s} c={conns} {r['calls_per_s']:>8,.0f} "
                            f"calls/s p50 {r['p50_ms']:.3f} ms cpu/call "
                            f"{speed.total_cpu(r)} µs other {r['other_load_cores']}"
                        )
            # 1. non-streamed calls/s and latency, targets interleaved per concurrency
            for conns in plan.concurrency if "throughput" in phases else ():
                for t in targets:
                    wrk(wrk_exe, t, "json", conns, plan.warmup_s, tmp, cpus=cpus_rest)
                    r = wrk(wrk_exe, t, "json", conns, plan.measure_s, tmp, cpus=cpus_rest)
                    res["throughput"].append(r)
                    log(
                        f"{t.name:10s} c={conns:<3d} {r['calls_per_s']:>9,.0f} calls/s  "
                        f"p50 {r['p50_ms']:.3f} ms  p99 {r['p99_ms']:.3f} ms  "
                        f"errors {r['errors']}"
                    )

            # 1b. the same with a long prompt (~4,300 tokens), 1 and 8 connections
            for conns in ((8,) if args.quick else (1, 8)) if "long" in phases else ():
                for t in targets:
                    wrk(wrk_exe, t, "long", conns, plan.warmup_s, tmp, cpus=cpus_rest)
                    r = wrk(wrk_exe, t, "long", conns, plan.long_s, tmp, cpus=cpus_rest)
                    res["long_prompt"].append(r)
                    log(
                        f"{t.name:10s} long c={conns:<3d} {r['calls_per_s']:>9,.0f} calls/s  "
                        f"p50 {r['p50_ms']:.3f} ms  cpu/call {r['cpu_us_per_call']} µs"
                    )

            # 2. streamed: TTFB one call at a time, then under load at 8 connections
            s20 = f"s{STREAM_CHUNKS[0]}"
            for t in targets if "stream" in phases else ():
                p = stream_probe(t, s20, plan.stream_probe_calls)
                res["stream_probe"].append(p)
                log(
                    f"{t.name:10s} stream TTFB p50 {p['ttfb_p50_ms']} ms total p50 "
                    f"{p['total_p50_ms']} ms ({p['calls']} calls, {p['bad']} bad)"
                )
            per_chunk = {}
            for t in targets if "stream" in phases else ():
                cpu_per = {}
                for route in (f"s{n}" for n in STREAM_CHUNKS):
                    wrk(wrk_exe, t, route, 8, plan.warmup_s, tmp, cpus=cpus_rest)
                    r = wrk(wrk_exe, t, route, 8, plan.stream_load_s, tmp, cpus=cpus_rest)
                    res["stream_load"].append(r)
                    cpu_per[route] = r["cpu_us_per_call"]
                    log(
                        f"{t.name:10s} stream {route} c=8 {r['calls_per_s']:,.0f} calls/s "
                        f"p50 {r['p50_ms']:.3f} ms cpu/call {r['cpu_us_per_call']} µs"
                    )
                if t.gateway is not None and all(cpu_per.values()):
                    per_chunk[t.name] = round(
                        (cpu_per[f"s{STREAM_CHUNKS[1]}"] - cpu_per[s20])
                        / (STREAM_CHUNKS[1] - STREAM_CHUNKS[0]),
                        2,
                    )
            res["per_chunk_cpu_us"] = per_chunk

            # 3. memory: a soak of N calls, bounded in count and in time
            settlement = {}
            for t in targets if "soak" in phases else ():
                if t.gateway is None:
                    continue
                log(
                    f"{t.name}: soak of {plan.soak_calls:,} calls at 8 connections "
                    f"(at most {plan.soak_cap_s} s)"
                )
                progress = tmp / f"soak-{t.name}.progress"

                def rss(pid: int = t.gateway.pid) -> float:
                    return memory(pid)["rss_mb"]

                with rss_sampler.RssSampler(t.name, rss, progress, t.gateway.backlog) as sampler:
                    r = wrk(
                        wrk_exe,
                        t,
                        "json",
                        8,
                        plan.soak_cap_s,
                        tmp,
                        limit=plan.soak_calls,
                        cpus=cpus_rest,
                        progress=progress,
                    )
                after = memory(t.gateway.pid)
                t0 = time.monotonic()
                backlog = t.gateway.backlog()
                while (b := t.gateway.backlog()) and time.monotonic() - t0 < 60:
                    time.sleep(0.02)
                drain = time.monotonic() - t0
                res["memory"].setdefault(t.name, {}).update(
                    {
                        "soak": {
                            k: r[k]
                            for k in (
                                "calls",
                                "calls_per_s",
                                "p50_ms",
                                "p99_ms",
                                "errors",
                                "seconds",
                            )
                        },
                        "calls_total": t.gateway.calls,
                        "after": after,
                        "after_drain": memory(t.gateway.pid),
                        "samples": sampler.samples,
                        "sample_backlog": sampler.backlogs,
                        "curve": rss_sampler.summarize(sampler.samples),
                    }
                )
                settlement[t.name] = {
                    "backlog_at_end": backlog,
                    "drain_s": round(drain, 3),
                    "backlog_left": b,
                }
                log(
                    f"{t.name}: {t.gateway.calls:,} calls served, RSS {after['rss_mb']} MB "
                    f"(peak {after['hwm_mb']} MB); outbox drained in {drain:.2f} s"
                )
            ctx["settlement"] = settlement
            ctx["gateways"] = [t.gateway for t in targets if t.gateway is not None]
            for name, hook in HOOKS.items() if "hooks" in phases else ():
                try:
                    res["hooks"][name] = hook(ctx)
                except Exception as exc:  # a hook never sinks the run
                    res["hooks"][name] = {"error": repr(exc)}

        # 4. profile (optional)
        if args.profile or args.profile_only:
            py_spy = find_py_spy(not args.no_install)
            if py_spy is None:
                res["profile"] = {"error": "py-spy not found (pip install py-spy)"}
            else:
                ptarget = next((t for t in targets if t.name == args.profile_mode), None)
                if ptarget is None:
                    res["profile"] = {"error": f"no {args.profile_mode} gateway to profile"}
                else:
                    log(f"profiling the {ptarget.name} gateway for {plan.profile_s} s x 2 (py-spy)")
                    res["profile"] = run_profile(
                        py_spy,
                        wrk_exe,
                        ptarget,
                        plan.profile_s,
                        tmp,
                        stamp,
                        cpus_rest,
                        native=args.profile_native,
                        route=args.profile_route,
                        conns=args.profile_conns,
                    )
                if "analysis" in res["profile"]:
                    print(render_profile(res["profile"]), file=sys.stderr)
                else:
                    log("profile failed: " + res["profile"].get("error", "?"))
    finally:
        for c in reversed(children):
            with contextlib.suppress(Exception):
                c.stop()
        for s in servers:
            with contextlib.suppress(Exception):
                s.cleanup()
        for c in children:
            log_path = getattr(c, "log", None)
            text = tail(log_path, 5000) if isinstance(log_path, Path) else ""
            if "Traceback" in text:
                errors = sorted(
                    {
                        ln.strip()
                        for ln in text.splitlines()
                        if re.match(r"^[\w.]+(Error|Exception)\b", ln.strip())
                    }
                )
                res["notes"].append(
                    f"{log_path.name} has {text.count('Traceback')} "
                    f"traceback(s) ({'; '.join(errors[:3]) or '?'}); "
                    f"log kept at {log_path}"
                )
    res["machine"]["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
    res["budget"] = evaluate_budget(res)
    res["speed_summary"] = speed.summarize(res["speed"])
    res["speed_targets"] = speed.evaluate(res["speed_summary"], res["memory"])
    RESULTS.mkdir(exist_ok=True)
    result_file = RESULTS / f"{stamp}-{mode.replace('+', '-')}.json"
    result_file.write_text(json.dumps(res, indent=2) + "\n")
    table = render(res)
    print(table)
    log(f"results written to {result_file.relative_to(REPO)}")
    if full_run and not args.quick and not args.no_readme and not args.profile_only:
        update_readme(table, result_file)
    with contextlib.suppress(OSError):
        if not any("traceback" in n for n in res["notes"]):
            shutil.rmtree(tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
