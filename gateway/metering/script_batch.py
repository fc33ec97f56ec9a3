"""Lua script calls made in the same event-loop iteration go to Redis as one pipeline.

Each script still runs atomically on its own (a pipeline without MULTI only saves round trips
and per-command client work); a caller gets its own reply or its own error, exactly as if it
had called the script alone. Under concurrency the admits and settles of several calls share
one write and one read: ~2 round trips per call become ~2 per batch.

A reply ``NOSCRIPT`` (Redis restarted and lost its script cache) loads the script and runs that
call again; any other failure of the pipeline (connection lost, timeout) is raised to every
caller of the batch, whose own handling (503 for an admit, a retry queue for a settle) applies.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

_Call = tuple[str, Sequence[Any], Sequence[Any], "asyncio.Future[Any]"]


class ScriptBatcher:
    """``call(name, keys, args)`` is ``EVALSHA`` of the named script, batched per loop turn.

    ``sources``: script name -> Lua source. Raises what the script raises (a ``RedisError``)."""

    def __init__(self, redis: Redis, sources: dict[str, str]) -> None:
        self._redis = redis
        self._scripts = {n: redis.register_script(src) for n, src in sources.items()}
        self._pending: list[_Call] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def call(self, name: str, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._pending:
            # After every callback already ready in this turn: the other calls woken by the
            # same I/O join the batch.
            loop.call_soon(self._flush)
        self._pending.append((name, keys, args, future))
        return await future

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        if not batch:
            return
        # Its own task: a caller cancelled while waiting does not cancel the others' commands.
        task = asyncio.get_running_loop().create_task(self._send(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: list[_Call]) -> None:
        try:
            if len(batch) == 1:
                name, keys, args, future = batch[0]
                replies: list[Any] = [await self._run(name, keys, args)]
            else:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for name, keys, args, _ in batch:
                        pipe.evalsha(self._scripts[name].sha, len(keys), *keys, *args)
                    replies = await pipe.execute(raise_on_error=False)
                for i, reply in enumerate(replies):
                    if isinstance(reply, NoScriptError):
                        name, keys, args, _ = batch[i]
                        try:
                            replies[i] = await self._run(name, keys, args)
                        except Exception as exc:  # this call's own error, not the batch's
                            replies[i] = exc
        except BaseException as exc:
            for *_, future in batch:
                if future.done():
                    continue
                if isinstance(exc, Exception):
                    future.set_exception(exc)
                else:  # this task cancelled (the loop closing): so are its callers
                    future.cancel()
            if not isinstance(exc, Exception):
                raise
            return
        for (*_, future), reply in zip(batch, replies, strict=True):
            if future.done():
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    async def _run(self, name: str, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        # redis-py's Script loads the source on NOSCRIPT and runs it again.
        return await self._scripts[name](keys=list(keys), args=list(args))
