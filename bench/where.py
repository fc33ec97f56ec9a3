#!/usr/bin/env python3
"""Where a call's CPU goes: py-spy collapsed stacks sorted into the parts of a proxied call.

    python bench/where.py bench/profiles/<stamp>-embedded-c8.collapsed.txt \\
        [--loop-us 520 --thread-us 90]

Each sample goes to the first part (in ``PARTS`` order) whose test its stack passes: the
threads and background writers first, then the client call's own subtrees, then the leaf's
package. With the measured CPU µs per call of the event loop thread and of the other threads
(the speed table's columns) every part is also given in µs per call. Profiling the floor
(``run.py --profile-mode floor``) and a gateway the same way shows, part by part, what the
gateway adds to the stack's floor.

py-spy charges time in C (syscalls included) to the Python frame that called it, so a socket
``write()`` shows under the part that wrote: on loopback it also runs the receiver's TCP path.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

Stack = Sequence[str]


def _has(*needles: str) -> Callable[[Stack], bool]:
    return lambda frames: any(n in f for f in frames for n in needles)


def _leaf(*needles: str) -> Callable[[Stack], bool]:
    return lambda frames: any(n in frames[-1] for n in needles)


# (part, test); the first that passes takes the sample.
THREAD = "other threads: the SQLite usage writer"
# Once per process, not per call (the first call that counts tokens loads the tables): shown,
# but left out of the µs per call.
ONCE = "once: loading tiktoken's tables"
PARTS: list[tuple[str, Callable[[Stack], bool]]] = [
    (THREAD, _has("Thread._bootstrap")),
    (ONCE, _has("load_tiktoken_bpe", "Encoding.__init__ (tiktoken/")),
    ("usage stream -> PostgreSQL writer", _has("gateway/metering/stream_writer.py")),
    ("reconciler, outbox and other background", _has("reconciler.py", "outbox.py")),
    ("Redis scripts (admit, settle): redis-py", _has("(redis/", "script_batch.py")),
    ("upstream request and response: aiohttp", _has("(aiohttp/")),
    ("client HTTP: uvicorn + httptools", _leaf("(uvicorn/", "httptools")),
    ("admission: auth, parse, quote, reserve", _has("admit (gateway/proxy/pipeline.py")),
    ("settlement: price, record, store", _has("settle (gateway/proxy/pipeline.py")),
    ("rest of the call: judge usage, scrub, reply", _has("handle (gateway/proxy/pipeline.py")),
    ("the floor's own code", _has("bench/floor.py")),
    ("event loop (uvloop, asyncio, tasks)", lambda frames: True),
]


def read(path: Path) -> Counter[str]:
    """Samples per part from a py-spy ``--format raw`` file (``frame;frame;... count``)."""
    parts: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        name = next(name for name, test in PARTS if test(frames))
        parts[name] += int(count)
    return parts


def render(
    parts: Counter[str], loop_us: float | None = None, thread_us: float | None = None
) -> str:
    """A markdown table: part, share of samples and, given the measured CPU µs per call of
    the event loop thread (``loop_us``) and of the other threads (``thread_us``), µs per call.

    py-spy samples a thread waiting for the GIL as busy, so sample shares overstate the
    writer thread; the µs come from each thread's own measured CPU instead, the loop's
    shared out over the loop's parts by their samples."""
    total = sum(parts.values()) or 1
    loop_total = sum(n for name, n in parts.items() if name not in (THREAD, ONCE)) or 1
    head = "| part | share of samples |" + (" µs per call |" if loop_us else "")
    rule = "|---|---:|" + ("---:|" if loop_us else "")
    lines = [head, rule]
    for name, _ in PARTS:
        n = parts.get(name, 0)
        if not n:
            continue
        row = f"| {name} | {100 * n / total:.1f} % |"
        if loop_us and name == ONCE:
            row += " - |"
        elif loop_us:
            us = (thread_us or 0.0) if name == THREAD else loop_us * n / loop_total
            row += f" {us:,.0f} |"
        lines.append(row)
    return "\n".join(lines) + "\n"


def _stamp_of(path: Path) -> str:
    m = re.match(r"(\d{8}T\d{6}Z)", path.name)
    return m.group(1) if m else path.name


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("collapsed", type=Path, nargs="+", help="py-spy raw files")
    ap.add_argument("--loop-us", type=float, help="event loop thread's CPU µs per call")
    ap.add_argument("--thread-us", type=float, help="other threads' CPU µs per call")
    args = ap.parse_args()
    for path in args.collapsed:
        print(f"{path.name} ({_stamp_of(path)})\n")
        print(render(read(path), args.loop_us, args.thread_us))


if __name__ == "__main__":
    main()
