"""Request ids: ``req_`` + 16 hex digits of ``time.time_ns()`` + 16 hex digits unique to this
process and call (10 drawn at random when the module loads, then a 24-bit counter).

Time first keeps usage-table inserts at the right edge of their index. The process part is
drawn once: a getrandom() per call was measurable on the hot path (bench/PROFILE.md). Two
ids are equal only if two processes drew the same 40 random bits and issued ids in the same
nanosecond at the same counter value; one process repeats a counter value after 16.7M ids,
by then at a later nanosecond.
"""

from __future__ import annotations

import itertools
import os
import time

_PROCESS = os.urandom(5).hex()
_COUNTER = itertools.count()


def _redraw() -> None:
    global _PROCESS
    _PROCESS = os.urandom(5).hex()


os.register_at_fork(after_in_child=_redraw)  # a forked child is another process


def new_request_id() -> str:
    """A new id, e.g. ``req_187c2d0e5a3b1f00a1b2c3d4e5000001`` (36 characters)."""
    return f"req_{time.time_ns():016x}{_PROCESS}{next(_COUNTER) & 0xFFFFFF:06x}"
