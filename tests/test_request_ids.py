"""Request ids are unique, time-ordered and distinct across processes."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from gateway.request_ids import new_request_id

SHAPE = re.compile(r"req_[0-9a-f]{32}")


def test_ids_are_unique_and_in_time_order_within_a_process() -> None:
    ids = [new_request_id() for _ in range(100_000)]
    assert all(SHAPE.fullmatch(i) for i in ids)
    assert len(set(ids)) == len(ids)
    times = [int(i[4:20], 16) for i in ids]
    assert times == sorted(times)


def test_two_processes_draw_different_ids_at_the_same_instant() -> None:
    code = "from gateway.request_ids import new_request_id; print(new_request_id())"
    others = {
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.strip()[20:30]
        for _ in range(3)
    }
    assert len(others | {new_request_id()[20:30]}) == 4  # each process its own 40 bits


def test_a_forked_child_draws_its_own_process_part() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.write(write, new_request_id()[20:30].encode())
        os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read, 10).decode() != new_request_id()[20:30]
