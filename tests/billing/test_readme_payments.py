"""README, Payments, "Testing locally": the signed-sample-event steps run as printed."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.gateway import free_port
from tests.support.readme import ROOT, Shell, blocks, operator_env


def test_the_sample_event_steps_run_as_printed_and_keep_their_own_database(
    tmp_path: Path,
) -> None:
    [(sh, start), (lang, sample), (sh2, post), *_] = blocks("### Testing locally")
    assert (sh, lang, sh2) == ("sh", "json", "sh")
    (tmp_path / "event.json").write_text(sample)
    # Port 8080 may be taken on a shared machine: the same steps on a free port.
    port = str(free_port())
    env = operator_env(
        GATEWAY_PORT=port,
        GATEWAY_URL=f"http://127.0.0.1:{port}",
        GATEWAY_MODELS=str(ROOT / "models.yaml"),
    )
    with Shell(tmp_path, env) as shell:
        # One script, like a terminal: the exports of the first block hold for the second.
        ran = shell.run((start + post).replace("localhost:8080", f"localhost:{port}"))
        assert ran.returncode == 0, f"stdout:\n{ran.stdout}\nstderr:\n{ran.stderr}"
    # curl prints no newline: the answer runs into the table `gateway users show` prints.
    answer, shown_at = json.JSONDecoder().raw_decode(ran.stdout, ran.stdout.index('{"received"'))
    assert (answer["status"], answer["user_id"], answer["amount"], answer["duplicate"]) == (
        "credited",
        "alice",
        "25.00",
        False,
    )
    shown = dict((*line.split(None, 1), "")[:2] for line in ran.stdout[shown_at:].splitlines())
    assert (shown["id"], shown["balance"]) == ("alice", "25.00")
    # The demo's database is left alone.
    assert not (tmp_path / "gateway.db").exists()
    assert (tmp_path / "payments-trial.db").exists()
