"""The soak with faults (bench/soak.py) in its short form: two production gateway processes
under mixed traffic while PostgreSQL and Redis restart, one process is SIGKILLed and the
upstream fails; it exits 0 only when every money invariant held."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.servers import find_postgres_bin, find_redis_server, require_or_skip

pytestmark = pytest.mark.production

SOAK = Path(__file__).resolve().parents[2] / "bench" / "soak.py"


def test_short_soak_with_faults_keeps_every_invariant() -> None:
    if find_postgres_bin() is None or find_redis_server() is None:
        require_or_skip("the soak needs PostgreSQL and Redis server binaries")
    done = subprocess.run(
        [sys.executable, str(SOAK), "--short"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    report = f"{done.stdout}\n--- stderr ---\n{done.stderr[-4000:]}"
    assert done.returncode == 0, report
    assert "soak passed" in done.stdout, report
    for check in ("Σ usage cost == Σ usage debits", "one usage record per served call",
                  "every Stripe payment credited exactly once", "gateway RSS flat"):  # fmt: skip
        assert f"[ok] {check}" in done.stdout, report
