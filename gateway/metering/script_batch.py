"""Lua script calls made in the same event-loop iteration go to Redis as one pipeline.

Each script still runs atomically on its own (a pipeline without MULTI only saves round trips
and per-command client work); a caller gets its own reply or its own error, exactly as if it
had called the script alone. Under concurrency the admits and settles of several calls share
one write and one read: ~2 round trips per call become ~2 per batch.

A reply ``NOSCRIPT`` (Redis restarted and lost its script cache) loads the scripts and sends
those calls again, together; any other failure of the batch (connection lost, timeout) is
raised to every caller of the batch, whose own handling (503 for an admit, a retry queue for a
settle) applies.

The batch is written on a pooled connection directly (``pack_commands``, one
``read_response`` per call) rather than through redis-py's ``Pipeline``: on the hot path its
command stack, event dispatch and retry wrappers cost ~40 µs of CPU per round trip
(bench/PROFILE.md). The client's own rule is kept: a connection error or timeout is retried
once on a fresh connection, as ``clients.connect`` configures every other command.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

_Call = tuple[str, Sequence[Any], Sequence[Any], "asyncio.Future[Any]"]


class ScriptBatcher:
    """``call(name, keys, args)`` is ``EVALSHA`` of the named script, batched per loop turn.

    ``sources``: script name -> Lua source. Raises what the script raises (a ``RedisError``)."""

    def __init__(self, redis: Redis, sources: dict[str, str]) -> None:
        self._redis = redis
        self._sources = sources
        self._shas = {n: hashlib.sha1(src.encode()).hexdigest() for n, src in sources.items()}
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
            commands = [
                ("EVALSHA", self._shas[name], len(keys), *keys, *args)
                for name, keys, args, _ in batch
            ]
            try:
                replies = await self._round_trip(commands)
            except (RedisConnectionError, RedisTimeoutError):
                replies = await self._round_trip(commands)  # once, on a fresh connection
            lost = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
            if lost:  # Redis lost its script cache: load them, send those calls again, once
                for name in {batch[i][0] for i in lost}:
                    await self._redis.script_load(self._sources[name])
                again = await self._round_trip([commands[i] for i in lost])
                for i, reply in zip(lost, again, strict=True):
                    replies[i] = reply
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

    async def _round_trip(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Every command's reply, in order; a command's error reply is its item (not raised).
        Raises a connection error or timeout; the connection is then dropped, not reused."""
        pool = self._redis.connection_pool
        conn: AbstractConnection = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            await conn.send_packed_command(conn.pack_commands(commands), check_health=False)
            replies: list[Any] = []
            for _ in commands:
                try:
                    replies.append(await conn.read_response())
                except ResponseError as exc:  # this command's error; the others still reply
                    replies.append(exc)
            return replies
        except BaseException:
            # Replies may still be on their way: nobody may read them as theirs.
            await conn.disconnect()
            raise
        finally:
            await pool.release(conn)
