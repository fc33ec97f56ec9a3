"""Script calls made together go to Redis as one pipeline; each caller gets its own answer."""

from __future__ import annotations

import asyncio
import socket

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from gateway.metering.redis_store import connect
from gateway.metering.script_batch import ScriptBatcher

SOURCES = {
    "incr": "return redis.call('INCRBY', KEYS[1], ARGV[1])",
    "fail": "return redis.error_reply('refused ' .. ARGV[1])",
}


def test_calls_made_together_share_one_pipeline_and_each_gets_its_own_reply(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def main() -> None:
        redis = connect(redis_url)
        batcher = ScriptBatcher(redis, SOURCES)
        writes = 0
        real = batcher._round_trip

        async def counting(commands: list[tuple[object, ...]]) -> list[object]:
            nonlocal writes
            writes += 1
            return await real(commands)

        monkeypatch.setattr(batcher, "_round_trip", counting)
        await redis.script_flush()  # the first batch meets NOSCRIPT and recovers
        replies = await asyncio.gather(
            *(batcher.call("incr", ["n"], [i]) for i in range(1, 11)),
            batcher.call("fail", [], ["x"]),
            return_exceptions=True,
        )
        assert replies[:10] == [sum(range(1, i + 2)) for i in range(10)]  # in call order
        assert await redis.get("n") == b"55"  # every call ran exactly once
        assert isinstance(replies[10], ResponseError)
        assert "refused x" in str(replies[10])
        assert writes == 2  # the batch, then its calls that met NOSCRIPT, together
        # A call alone is sent alone, and its error is its own.
        assert await batcher.call("incr", ["n"], [5]) == 60
        with pytest.raises(ResponseError, match="refused y"):
            await batcher.call("fail", [], ["y"])
        await redis.aclose()

    asyncio.run(main())


def test_a_lost_connection_fails_every_caller_of_the_batch() -> None:
    async def main() -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        redis = connect(f"redis://127.0.0.1:{port}/0")
        batcher = ScriptBatcher(redis, SOURCES)
        replies = await asyncio.gather(
            *(batcher.call("incr", ["n"], [1]) for _ in range(3)), return_exceptions=True
        )
        assert all(isinstance(r, RedisConnectionError) for r in replies)
        await redis.aclose()

    asyncio.run(main())


def test_connections_killed_between_batches_are_replaced_without_failing_a_caller(
    redis_url: str,
) -> None:
    async def main() -> None:
        redis = connect(redis_url)
        other = connect(redis_url)
        batcher = ScriptBatcher(redis, SOURCES)
        await redis.delete("k")
        assert await batcher.call("incr", ["k"], [1]) == 1
        # As a Redis restart does: every pooled connection of the batcher is dead.
        await other.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        replies = await asyncio.gather(*(batcher.call("incr", ["k"], [1]) for _ in range(3)))
        assert sorted(replies) == [2, 3, 4]
        assert await redis.get("k") == b"4"  # each call ran once
        await other.aclose()
        await redis.aclose()

    asyncio.run(main())
