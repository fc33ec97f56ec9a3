"""Self-tests for the private PostgreSQL / Redis test servers (tests/support)."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
import redis.asyncio as aioredis

from tests.support.servers import PostgresServer, RedisServer, require_or_skip

pytestmark = pytest.mark.production


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


async def _pg_fetchval(dsn: str, sql: str, *args):
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


async def _pg_execute(dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _redis(url: str, *command):
    client = aioredis.from_url(url, socket_timeout=10)
    try:
        return await client.execute_command(*command)
    finally:
        await client.aclose()


def pg_fetchval(dsn: str, sql: str, *args):
    return asyncio.run(_pg_fetchval(dsn, sql, *args))


def pg_execute(dsn: str, sql: str) -> None:
    asyncio.run(_pg_execute(dsn, sql))


def redis_cmd(url: str, *command):
    return asyncio.run(_redis(url, *command))


# --------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------


def test_pg_accepts_asyncpg_connection(pg: PostgresServer) -> None:
    assert pg.is_running()
    assert pg.dsn == f"postgresql://postgres@127.0.0.1:{pg.port}/postgres"
    assert pg_fetchval(pg.dsn, "SELECT 1 + 1") == 2
    # private server: never the system one
    assert pg.port != 5432
    assert pg_fetchval(pg.dsn, "SHOW data_directory") == str(pg.datadir)


def test_pg_stopped_refuses_then_restart_keeps_data(pg: PostgresServer, pg_dsn: str) -> None:
    pg_execute(pg_dsn, "CREATE TABLE t (v int); INSERT INTO t VALUES (42)")
    port = pg.port

    pg.stop()
    assert not pg.is_running()
    with pytest.raises(ConnectionRefusedError):
        pg_fetchval(pg_dsn, "SELECT 1")

    pg.start()
    assert pg.port == port
    assert pg_fetchval(pg_dsn, "SELECT v FROM t") == 42


def test_pg_kill_then_restart_recovers_committed_data(pg: PostgresServer, pg_dsn: str) -> None:
    pg_execute(pg_dsn, "CREATE TABLE t (v int); INSERT INTO t VALUES (7)")

    pg.kill()
    assert not pg.is_running()
    with pytest.raises(ConnectionRefusedError):
        pg_fetchval(pg_dsn, "SELECT 1")

    pg.restart()
    assert pg_fetchval(pg_dsn, "SELECT v FROM t") == 7


def test_pg_fresh_databases_are_isolated(pg: PostgresServer, pg_dsn: str) -> None:
    other = pg.create_database()
    try:
        assert other != pg_dsn
        pg_execute(pg_dsn, "CREATE TABLE only_here (v int)")
        assert pg_fetchval(pg_dsn, "SELECT to_regclass('only_here') IS NOT NULL") is True
        assert pg_fetchval(other, "SELECT to_regclass('only_here') IS NOT NULL") is False
        assert pg_fetchval(other, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == 0
    finally:
        pg.drop_database(other.rsplit("/", 1)[1])


def test_pg_dsn_database_dropped_after_use(pg: PostgresServer) -> None:
    name = "t_dropcheck"
    dsn = pg.create_database(name)
    assert pg_fetchval(dsn, "SELECT current_database()") == name
    pg.drop_database(name)
    assert pg.psql(f"SELECT count(*) FROM pg_database WHERE datname = '{name}'").strip() == "0"


def test_pg_fixture_restarts_server_left_stopped(postgres_server: PostgresServer, request) -> None:
    postgres_server.stop()
    assert not postgres_server.is_running()
    # what the function-scoped ``pg`` fixture does for the next test
    server = request.getfixturevalue("pg")
    assert server is postgres_server
    assert server.is_running()
    assert pg_fetchval(server.dsn, "SELECT 1") == 1
    # leave it stopped: the following tests exercise the fixture restart for real
    server.stop()


# --------------------------------------------------------------------------
# Redis
# --------------------------------------------------------------------------


def test_redis_basic(redis_srv: RedisServer, redis_url: str) -> None:
    assert redis_url == f"redis://127.0.0.1:{redis_srv.port}/0"
    assert redis_srv.port != 6379
    assert redis_cmd(redis_url, "PING") is True
    assert redis_cmd(redis_url, "CONFIG", "GET", "appendonly") == {b"appendonly": b"yes"}
    assert redis_cmd(redis_url, "CONFIG", "GET", "appendfsync") == {b"appendfsync": b"always"}


def test_redis_flush_between_tests(redis_srv: RedisServer, redis_url: str) -> None:
    redis_cmd(redis_url, "SET", "leftover", "1")
    redis_srv.flush()
    assert redis_cmd(redis_url, "DBSIZE") == 0


def test_redis_aof_survives_restart(redis_srv: RedisServer, redis_url: str) -> None:
    redis_cmd(redis_url, "SET", "k", "v1")
    port = redis_srv.port

    redis_srv.stop()
    assert not redis_srv.is_running()
    with pytest.raises(ConnectionRefusedError):
        redis_srv.command("PING")

    redis_srv.start()
    assert redis_srv.port == port
    assert redis_cmd(redis_url, "GET", "k") == b"v1"


def test_redis_kill_then_restart_keeps_acknowledged_writes(
    redis_srv: RedisServer, redis_url: str
) -> None:
    assert redis_srv.appendfsync == "always"
    redis_cmd(redis_url, "SET", "crash", "safe")
    redis_cmd(redis_url, "INCRBY", "counter", "5")

    redis_srv.kill()
    assert not redis_srv.is_running()

    redis_srv.restart()
    assert redis_cmd(redis_url, "GET", "crash") == b"safe"
    assert redis_cmd(redis_url, "GET", "counter") == b"5"


def test_redis_fixture_restarts_server_left_stopped(redis_server: RedisServer, request) -> None:
    redis_server.kill()
    server = request.getfixturevalue("redis_srv")
    assert server is redis_server
    assert server.command("PING") == "PONG"
    server.stop()  # the next test's fixture restarts it


# --------------------------------------------------------------------------
# skip / fail policy
# --------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["1", "true", "yes"])
def test_require_or_skip_fails_on_ci(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.fail.Exception, match="binary missing"):
        require_or_skip("binary missing")


@pytest.mark.parametrize("value", [None, "", "0", "false"])
def test_require_or_skip_skips_locally(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.skip.Exception, match="binary missing"):
        require_or_skip("binary missing")
