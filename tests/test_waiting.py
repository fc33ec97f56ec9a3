"""The polling helper every background wait in the suite goes through (tests/support/waiting.py)."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from tests.support.waiting import until, wait_until


def test_wait_returns_the_first_value_that_satisfies() -> None:
    counter = itertools.count()
    assert wait_until(lambda: next(counter), lambda n: n >= 3, wanted="3", interval=0) == 3


def test_timeout_raises_naming_what_was_wanted_and_what_was_seen() -> None:
    with pytest.raises(AssertionError, match=r"^wanted 13 usage rows, saw 12 after 0\.0s$"):
        wait_until(
            lambda: [None] * 12,
            lambda rows: len(rows) >= 13,
            wanted="13 usage rows",
            show=lambda rows: f"{len(rows)}",
            timeout=0,
        )


def test_until_waits_inside_the_loop_and_names_what_it_never_saw() -> None:
    async def main() -> None:
        done = asyncio.Event()
        asyncio.get_running_loop().call_soon(done.set)
        assert await until(done.is_set, bool, wanted="the event", interval=0) is True
        with pytest.raises(AssertionError, match=r"^wanted backlog 0, saw 2 after 0\.0s$"):
            await until(lambda: 2, lambda n: n == 0, wanted="backlog 0", within=0)

    asyncio.run(main())
