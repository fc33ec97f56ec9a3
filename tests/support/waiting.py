"""Polling for something the system does in the background, failing loudly when it never does."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    probe: Callable[[], T],
    done: Callable[[T], object],
    *,
    wanted: str,
    show: Callable[[T], str] = repr,
    timeout: float = 10.0,
    interval: float = 0.05,
) -> T:
    """Calls ``probe`` until ``done`` holds for what it returns, and returns that.

    On timeout it raises AssertionError naming what was ``wanted`` and the last thing seen
    (rendered by ``show``), so a test never goes on with a state it did not wait for.
    """
    deadline = time.monotonic() + timeout
    while True:
        seen = probe()
        if done(seen):
            return seen
        if time.monotonic() > deadline:
            raise AssertionError(f"wanted {wanted}, saw {show(seen)} after {timeout:.1f}s")
        time.sleep(interval)
