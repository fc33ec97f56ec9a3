"""RSS samples of a gateway while a soak runs, for bench/run.py's soak phase.

A background thread reads the gateway's RSS (MiB, summed over its process tree, by the
``rss`` callable run.py passes in) every ``every_s`` seconds, and the calls wrk has had
answered so far from a progress file that ``bench/post.lua`` rewrites every 1,000 responses
(``BENCH_PROGRESS``). ``summarize`` turns the samples into start / end / peak and the growth
over the last quarter of the soak, which tells a plateau from a leak.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# A soak is "flat" when its last quarter grew by at most this much: a few MB is allocator
# noise and the usage outbox's backlog moving with the writer; a leak of even a few hundred
# bytes per call adds well over this in a quarter of 1M calls.
FLAT_MB = 5.0


class RssSampler:
    """Samples ``(seconds since start, calls so far or None, rss MiB)`` every ``every_s`` s.

    ``backlog`` (optional) returns the gateway's usage outbox backlog; it is kept alongside
    (``backlog`` list, same length) because an embedded gateway's RSS follows it.
    """

    def __init__(
        self,
        name: str,
        rss: Callable[[], float],
        progress: Path | None = None,
        backlog: Callable[[], int | None] | None = None,
        every_s: float = 10.0,
    ) -> None:
        self.name = name
        self._rss = rss
        self._progress = progress
        self._backlog = backlog
        self._every = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"rss-{name}", daemon=True)
        self.samples: list[tuple[float, int | None, float]] = []
        self.backlogs: list[int | None] = []
        self._t0 = 0.0

    def __enter__(self) -> RssSampler:
        self._t0 = time.monotonic()
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self._sample()  # the soak's end, so the curve ends where "RSS after" is read

    def calls(self) -> int | None:
        """Responses wrk has counted so far (None before the first 1,000 or without a file)."""
        if self._progress is None:
            return None
        with contextlib.suppress(OSError, ValueError):
            text = self._progress.read_text().strip()
            return int(text) if text else None
        return None

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            self._sample()

    def _sample(self) -> None:
        secs = round(time.monotonic() - self._t0, 1)
        calls, rss = self.calls(), self._rss()
        backlog = self._backlog() if self._backlog else None
        self.samples.append((secs, calls, rss))
        self.backlogs.append(backlog)
        print(
            f"[rss] {self.name} {secs:7.1f}s calls {calls if calls is not None else '?':>9} "
            f"rss {rss:6.1f} MB backlog {backlog if backlog is not None else '?'}",
            file=sys.stderr,
            flush=True,
        )


def summarize(samples: list[tuple[float, int | None, float]]) -> dict[str, Any]:
    """Start, end and peak RSS (MiB) of a sample list, and growth over its last quarter.

    ``last_quarter_growth_mb`` is the last sample minus the sample at 75 % of the elapsed
    time; ``flat`` is that growth ≤ ``FLAT_MB`` (None with fewer than 4 samples).
    """
    if not samples:
        return {}
    rss = [s[2] for s in samples]
    end_t = samples[-1][0]
    q3 = next(s for s in samples if s[0] >= 0.75 * end_t)
    growth = round(rss[-1] - q3[2], 1)
    return {
        "start_mb": rss[0],
        "end_mb": rss[-1],
        "peak_mb": max(rss),
        "samples": len(samples),
        "last_quarter_from_s": q3[0],
        "last_quarter_growth_mb": growth,
        "flat": growth <= FLAT_MB if len(samples) >= 4 else None,
    }
