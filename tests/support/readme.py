"""The README's own commands, run as printed: its fenced blocks by section, and a shell that
runs them in a scratch directory with this checkout's `gateway` first on PATH."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import gateway

ROOT = Path(gateway.__file__).resolve().parent.parent
README = ROOT / "README.md"


def blocks(heading: str) -> list[tuple[str, str]]:
    """(language, text) of each fenced block under ``heading`` (a whole heading line, e.g.
    ``### Testing locally``), up to the next heading of the same or a higher level."""
    level = len(heading.split(" ", 1)[0])
    found: list[tuple[str, str]] = []
    inside = fence = None
    lines: list[str] = []
    for line in README.read_text().splitlines():
        if fence is not None:  # in a block: only its closing fence ends it
            if line == "```":
                found.append((fence, "".join(lines)))
                fence = None
            else:
                lines.append(line + "\n")
        elif line.startswith("```"):
            if inside:
                fence, lines = line[3:], []
        elif re.match(r"#+ ", line):
            if line == heading:
                inside = True
            elif inside and len(line.split(" ", 1)[0]) <= level:
                break
    return found


def operator_env(**extra: str) -> dict[str, str]:
    """The environment of an operator's shell after the quick start: this checkout's `gateway`
    and python first on PATH, none of the test run's GATEWAY_* or STRIPE_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "STRIPE_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    # The installed `gateway` script may belong to another checkout: import this one.
    env["PYTHONPATH"] = str(ROOT)
    return {**env, **extra}


@dataclass
class Shell:
    """Runs bash scripts in ``cwd``, each in its own process group; leaving the ``with``
    block stops whatever they left running (``gateway serve &``)."""

    cwd: Path
    env: dict[str, str]
    groups: list[int] = field(default_factory=list)

    def run(self, script: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        n = len(self.groups)
        out, err = self.cwd / f".script-{n}.out", self.cwd / f".script-{n}.err"
        # Files, not pipes: a background process holding a pipe would keep it open.
        with out.open("w") as stdout, err.open("w") as stderr:
            proc = subprocess.Popen(
                ["bash", "-e", "-c", script],
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,
            )
            self.groups.append(proc.pid)
            code = proc.wait(timeout)
        return subprocess.CompletedProcess(proc.args, code, out.read_text(), err.read_text())

    def __enter__(self) -> Shell:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for group in self.groups:
            try:
                os.killpg(group, signal.SIGTERM)
            except ProcessLookupError:
                pass
