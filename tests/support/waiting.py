"""Polling for something the system does in the background, failing loudly when it never does."""

from __future__ import annotations

import asyncio
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


async def until(
    probe: Callable[[], T],
    done: Callable[[T], object],
    *,
    wanted: str,
    show: Callable[[T], str] = repr,
    within: float = 10.0,
    interval: float = 0.02,
) -> T:
    """``wait_until`` inside an event loop (``within`` seconds): sleeps with asyncio, so the loop
    keeps running the background work being waited for."""
    deadline = time.monotonic() + within
    while True:
        seen = probe()
        if done(seen):
            return seen
        if time.monotonic() > deadline:
            raise AssertionError(f"wanted {wanted}, saw {show(seen)} after {within:.1f}s")
        await asyncio.sleep(interval)
