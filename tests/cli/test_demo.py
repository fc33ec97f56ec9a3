"""`gateway serve --demo` as a new operator meets it: a real process, its printed commands
pasted as printed into a fresh terminal (the venv not active), restarted on the same database."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest

from gateway.demo import banner
from tests.support.gateway import free_port
from tests.support.readme import ROOT, Shell
from tests.support.waiting import wait_until

MOCK_URL = "http://127.0.0.1:9009/v1"


@dataclass
class Demo:
    proc: subprocess.Popen[bytes]
    out: Path
    err: Path
    base: str

    def printed(self) -> str:
        return self.out.read_text()

    def logged(self) -> str:
        return self.err.read_text()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)


@pytest.fixture
def demo_dir(tmp_path: Path) -> Path:
    """A directory like a fresh checkout's: the shipped models.yaml, its mock on a free port."""
    shipped = (ROOT / "models.yaml").read_text()
    assert MOCK_URL in shipped
    (tmp_path / "models.yaml").write_text(
        shipped.replace(MOCK_URL, f"http://127.0.0.1:{free_port()}/v1")
    )
    return tmp_path


@pytest.fixture
def start_demo(demo_dir: Path) -> Iterator[type[Demo]]:
    started: list[Demo] = []
    port = free_port()

    def start() -> Demo:
        n = len(started)
        out, err = demo_dir / f"demo-{n}.out", demo_dir / f"demo-{n}.err"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "STRIPE_"))}
        env.update(
            PYTHONPATH=str(ROOT),
            GATEWAY_PORT=str(port),
            # So that the first call crosses the warning level: its event shows in the output.
            GATEWAY_LOW_BALANCE_WARN="9.99999",
        )
        with out.open("wb") as stdout, err.open("wb") as stderr:
            proc = subprocess.Popen(
                [sys.executable, "-m", "gateway", "serve", "--demo"],
                cwd=demo_dir,
                env=env,
                stdout=stdout,
                stderr=stderr,
            )
        demo = Demo(proc, out, err, f"http://127.0.0.1:{port}")
        started.append(demo)
        wait_until(
            lambda: (proc.poll(), demo.printed()),
            lambda seen: seen[0] is not None or "users show demo" in seen[1],
            wanted="the demo's banner",
            show=lambda seen: f"exit {seen[0]}; printed:\n{seen[1]}\n{demo.logged()}",
            timeout=30,
        )
        wait_until(
            lambda: _health(demo.base),
            lambda code: code == 200,
            wanted=f"/healthz 200 from {demo.base}",
            timeout=30,
        )
        return demo

    yield start  # type: ignore[misc]
    for demo in started:
        demo.stop()


def _health(base: str) -> int | str:
    try:
        return httpx.get(f"{base}/healthz", timeout=2).status_code
    except httpx.HTTPError as exc:
        return repr(exc)


def blocks_of(printed: str) -> tuple[str, str]:
    """The two command blocks of the banner: what follows "Try it ..." and "Operator ..."."""
    paragraphs = printed.split("\n\n")
    after = {p.strip().split(" ", 1)[0]: i for i, p in enumerate(paragraphs)}
    return paragraphs[after["Try"] + 1] + "\n", paragraphs[after["Operator"] + 1] + "\n"


def admin_key_of(printed: str) -> str:
    return printed.split("admin key: ", 1)[1].split()[0]


def fresh_terminal(cwd: Path) -> Shell:
    """A new terminal: the venv is not on PATH (only the system's tools are)."""
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": os.environ.get("HOME", "/tmp"),
        # The installed `gateway` script may belong to another checkout: import this one.
        "PYTHONPATH": str(ROOT),
    }
    return Shell(cwd, env)


def test_the_printed_commands_run_as_printed_and_the_admin_key_survives_a_restart(
    start_demo: type[Demo], demo_dir: Path
) -> None:
    demo = start_demo()
    try_it, operator = blocks_of(demo.printed())
    admin_key = admin_key_of(demo.printed())
    assert f"GATEWAY_ADMIN_KEY={admin_key}" in operator
    with fresh_terminal(demo_dir) as terminal:
        ran = terminal.run(try_it)
        assert ran.returncode == 0, f"{ran.stdout}\n{ran.stderr}"
        answer, curl = ran.stdout.split("\n", 1)
        assert answer == "Hello from the mock model."
        assert json.loads(curl)["user_id"] == "demo"
        shown = terminal.run(operator)
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout.startswith("id          demo\n")

        # The call crossed the warning level: the operator sees one structured event.
        def low_balance() -> list[dict[str, object]]:
            return [
                json.loads(line)
                for line in demo.logged().splitlines()
                if line.startswith('{"event":"low_balance"')
            ]

        [event] = wait_until(low_balance, bool, wanted="a low_balance event in the demo's log")
        assert (event["user_id"], event["level"], event["threshold"]) == (
            "demo",
            "warning",
            "9.99999",
        )

        demo.stop()
        again = start_demo()
        assert admin_key_of(again.printed()) == admin_key
        assert blocks_of(again.printed()) == (try_it, operator)
        still = terminal.run(operator)  # the key exported before the restart still works
        assert still.returncode == 0, still.stderr
        assert (demo_dir / "gateway.db.demo-admin-key").stat().st_mode & 0o777 == 0o600


def test_streams_cut_or_left_early_leave_no_traceback_in_the_demo(
    start_demo: type[Demo], demo_dir: Path
) -> None:
    demo = start_demo()
    key = demo.printed().split("key:       ", 1)[1].split()[0]
    with openai.OpenAI(base_url=f"{demo.base}/v1", api_key=key, max_retries=0) as client:
        # The gateway ends a stream the upstream cuts with an error event the SDK raises on
        # (billed upstream_cut), and logs no traceback.
        with pytest.raises(openai.APIError):
            list(
                client.chat.completions.create(
                    model="demo",
                    messages=[{"role": "user", "content": "[[mock:cut_after=1]]"}],
                    stream=True,
                )
            )
        stream = client.chat.completions.create(
            model="demo",
            messages=[{"role": "user", "content": "[[mock:chunks=50]] [[mock:chunk_delay=0.02]]"}],
            stream=True,
        )
        next(iter(stream))
        stream.close()
    admin = {"Authorization": f"Bearer {admin_key_of(demo.printed())}"}
    wait_until(
        lambda: httpx.get(f"{demo.base}/admin/users/demo/usage", headers=admin).json()["data"],
        lambda rows: len(rows) == 2,
        wanted="both streams settled",
    )
    demo.stop()
    assert "Traceback" not in demo.logged()


@pytest.mark.parametrize("has_openai", [True, False])
def test_the_snippet_installs_its_client_only_when_this_python_lacks_it(has_openai: bool) -> None:
    text = banner(
        base="http://127.0.0.1:8080",
        key="sk-gw-k",
        admin_key="adm-a",
        admin_file=Path("gateway.db.demo-admin-key"),
        python="/opt/my env/bin/python",
        has_openai=has_openai,
    )
    try_it, _ = blocks_of(text)
    first = try_it.splitlines()[0]
    if has_openai:
        assert first == "'/opt/my env/bin/python' - <<'PY'"
    else:
        assert first.startswith("'/opt/my env/bin/python' -m pip install -q openai")
        assert try_it.splitlines()[1] == "'/opt/my env/bin/python' - <<'PY'"


def test_a_second_demo_on_the_same_mock_port_says_why_it_cannot_start(
    start_demo: type[Demo], demo_dir: Path
) -> None:
    # Newcomer trial of issue 12: a second `gateway serve --demo --port N` died with a traceback.
    start_demo()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "STRIPE_"))}
    env.update(
        PYTHONPATH=str(ROOT),
        GATEWAY_PORT=str(free_port()),
        GATEWAY_DATABASE_URL="sqlite:///./other.db",
    )
    second = subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--demo"],
        cwd=demo_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.returncode != 0
    assert "cannot listen on 127.0.0.1:" in second.stderr
    assert "another demo" in second.stderr
    assert "Traceback" not in second.stderr


def test_ctrl_c_stops_the_demo_without_a_traceback(start_demo: type[Demo]) -> None:
    demo = start_demo()
    demo.proc.send_signal(signal.SIGINT)
    assert demo.proc.wait(30) != 0  # interrupted, as a shell expects (130)
    assert "Traceback" not in demo.logged()


def test_the_demo_serves_the_anthropic_sdk_as_the_readme_shows(start_demo: type[Demo]) -> None:
    import anthropic

    demo = start_demo()
    key = demo.printed().split("key:       ", 1)[1].split()[0]
    # README "Anthropic Messages API": the base URL without /v1, the gateway key as the token.
    with anthropic.Anthropic(base_url=demo.base, auth_token=key, max_retries=0) as claude:
        reply = claude.messages.create(
            model="demo-claude",
            max_tokens=100,
            messages=[{"role": "user", "content": "Say hello"}],
        )
    assert reply.content[0].type == "text"
    admin = {"Authorization": f"Bearer {admin_key_of(demo.printed())}"}
    rows = wait_until(
        lambda: httpx.get(f"{demo.base}/admin/users/demo/usage", headers=admin).json()["data"],
        lambda rows: len(rows) == 1,
        wanted="the call settled",
    )
    assert (rows[0]["model"], rows[0]["endpoint"], rows[0]["status"]) == (
        "demo-claude",
        "messages",
        "ok",
    )
