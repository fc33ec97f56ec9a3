"""The Redis key layout (gateway/metering/layout.py): one Redis keeps the keys every release
before shards wrote; a sharded layout puts each script's keys in one hash slot; a process
configured for another layout than Redis holds refuses to start."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest
from redis.crc import key_slot

from gateway.ledger import open_ledger
from gateway.metering.layout import Layout, LayoutMismatch
from gateway.metering.modes import open_metering
from gateway.metering.redis_store import RedisStore, connect
from gateway.metrics import Metrics
from gateway.settings import Settings, SettingsError
from tests.metering.test_store_contract import FakeLedger
from tests.support.records import usage_record


def script_keys(layout: Layout, user_id: str) -> list[str]:
    """Every key any script of ``user_id`` is handed (redis_store.py)."""
    k = layout.user(user_id)
    return [
        *k.holds,
        k.pending,
        k.credited,
        k.marker("req-1"),
        k.stream,
        f"{k.stream}:dead",
        *k.quota(f"u:{user_id}"),
        *k.quota("k:key_0123456789abcdef"),
    ]


def test_one_redis_keeps_the_unsharded_keys() -> None:
    keys = script_keys(Layout(), "alice")
    assert keys == [
        "gw:u:alice",
        "gw:r:alice",
        "gw:rx:alice",
        "gw:pc:alice",
        "gw:cv:alice",
        "gw:s:req-1",
        "gw:usage",
        "gw:usage:dead",
        *(f"gw:{name}:u:alice" for name in ("q", "qh", "qx", "qw", "qt")),
        *(f"gw:{name}:k:key_0123456789abcdef" for name in ("q", "qh", "qx", "qw", "qt")),
    ]
    assert Layout().streams == ("gw:usage",)


@pytest.mark.parametrize("shards", [1, 3, 16, 256])
def test_every_script_touches_one_slot(shards: int) -> None:
    layout = Layout(shards=shards, tagged=True)
    for n in range(300):
        uid = f"user-{n}-{'é' * (n % 3)}"
        slots = {key_slot(key.encode()) for key in script_keys(layout, uid)}
        assert slots == {key_slot(layout.streams[layout.shard_of(uid)].encode())}


def test_shards_spread_evenly_over_the_slot_space() -> None:
    layout = Layout(shards=16)
    slices = [key_slot(stream.encode()) * 16 // 16384 for stream in layout.streams]
    assert slices == list(range(16))  # shard i's slot in the i-th sixteenth
    # So three masters with equal slot ranges (redis-cli --cluster create) get 5, 6, 5.
    masters = Counter(key_slot(stream.encode()) * 3 // 16384 for stream in layout.streams)
    assert sorted(masters.values()) == [5, 5, 6]


def test_a_users_shard_is_pinned() -> None:
    # crc32(user id) % shards: changing it would strand every balance (module doc).
    assert Layout(shards=16).shard_of("alice") == 7
    assert Layout(shards=16).user("alice").stream == "gw:{s7.43}:usage"
    assert Layout(shards=16).shard_of("bob") == 0


def test_balance_keys_name_their_user() -> None:
    for layout in (Layout(), Layout(shards=4)):
        k = layout.user("ali}:u:ce")
        assert layout.user_of(k.balance) == "ali}:u:ce"
        assert layout.user_of(k.pending) is None
        assert layout.user_of(k.quota("u:ali}:u:ce")[0]) is None
    assert Layout().user_of(Layout(shards=4).user("alice").balance) is None
    assert Layout(shards=4).user_of(Layout().user("alice").balance) is None


@pytest.mark.parametrize("shards", [0, 257])
def test_a_shard_count_out_of_range_is_refused(shards: int) -> None:
    with pytest.raises(ValueError, match="shard count"):
        Layout(shards=shards)
    with pytest.raises(SettingsError, match="GATEWAY_REDIS_SHARDS"):
        Settings.from_env({"GATEWAY_REDIS_SHARDS": str(shards)})


def test_settings_read_the_shard_count() -> None:
    assert Settings.from_env({}).redis_shards == 0  # the mode's default
    assert Settings.from_env({"GATEWAY_REDIS_SHARDS": "8"}).redis_shards == 8


def test_a_process_with_another_shard_count_refuses_to_start(redis_url: str) -> None:
    async def main() -> None:
        redis = connect(redis_url)
        ledger = FakeLedger(alice=1000)
        try:
            first = RedisStore(redis, ledger.load, layout=Layout(shards=4))
            await first.open()
            assert await first.settle(usage_record("r1", "alice", 7)) == 993
            other = RedisStore(redis, ledger.load, layout=Layout(shards=8))
            with pytest.raises(LayoutMismatch, match="tagged:4, this process as tagged:8"):
                await other.open()
            unsharded = RedisStore(redis, ledger.load)
            with pytest.raises(LayoutMismatch, match="tagged:4, this process as untagged:1"):
                await unsharded.open()
            same = RedisStore(redis, ledger.load, layout=Layout(shards=4))
            await same.open()  # another process of the same deployment
            assert (await same.snapshot("alice") or (0, 0))[0] == 993
        finally:
            await redis.aclose()

    asyncio.run(main())


def test_unsharded_usage_left_by_an_older_release_blocks_sharding(
    redis_url: str, tmp_path: Path
) -> None:
    async def main() -> None:
        redis = connect(redis_url)
        ledger = await open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
        try:
            await redis.xadd("gw:usage", {"r": "{}"})  # written before the layout marker
            settings = Settings(
                database_url=f"sqlite:///{tmp_path / 'ledger.db'}",
                redis_url=redis_url,
                redis_shards=4,
                spill_dir=tmp_path,
            )
            with pytest.raises(SettingsError, match=r"unsharded layout \(gw:usage\)"):
                await open_metering(settings, ledger, Metrics())
            assert await redis.get("gw:layout") is None  # nothing recorded on a refusal
            # The layout it was written in keeps working, and is recorded.
            unsharded = RedisStore(redis, FakeLedger().load)
            await unsharded.open()
            assert await redis.get("gw:layout") == b"untagged:1"
        finally:
            await ledger.close()
            await redis.aclose()

    asyncio.run(main())
