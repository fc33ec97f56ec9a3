"""pytest fixtures for private PostgreSQL / Redis servers.

Enable from ``tests/conftest.py`` with::

    pytest_plugins = ["tests.support.fixtures"]

or ad hoc with ``python -m pytest -p tests.support.fixtures``.

Fixtures
--------
postgres_server (session)  PostgresServer started once per session, cleaned up at the end
redis_server    (session)  RedisServer started once per session, cleaned up at the end
pg              (function) the session PostgresServer, restarted first if a previous
                           test left it stopped/killed
pg_dsn          (function) DSN of a fresh empty database ``t_<uuid>``, dropped afterwards
redis_srv       (function) the session RedisServer, running and FLUSHALLed
redis_url       (function) ``redis://127.0.0.1:PORT/0`` of ``redis_srv``
database        (function) parametrized over the two ledger databases: a SQLite file in
                           tmp_path, and a fresh PostgreSQL database (``pg_dsn``, marked
                           ``production``); a ``Database`` (kind, url, ledger factory)
database_url    (function) ``database.url``, a GATEWAY_DATABASE_URL
make_ledger     (function) ``database.open``, opens a new ledger on it

If a server binary is missing the tests are skipped, unless ``CI`` is set to a
true value, in which case they fail (see ``require_or_skip``).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.ledger import open_ledger
from gateway.ledger.base import Ledger
from tests.support.servers import (
    PostgresServer,
    RedisServer,
    find_postgres_bin,
    find_redis_server,
    require_or_skip,
)

__all__ = [
    "Database",
    "database",
    "database_url",
    "make_ledger",
    "pg",
    "pg_dsn",
    "postgres_server",
    "redis_server",
    "redis_srv",
    "redis_url",
]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    bindir = find_postgres_bin()
    if bindir is None:
        require_or_skip(
            "PostgreSQL server binaries (initdb, postgres) not found; "
            "install postgresql or set PG_BINDIR"
        )
    server = PostgresServer(bindir)
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    executable = find_redis_server()
    if executable is None:
        require_or_skip("redis-server not found; install redis or set REDIS_SERVER")
    server = RedisServer(executable)
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def pg(postgres_server: PostgresServer) -> PostgresServer:
    postgres_server.ensure_running()
    return postgres_server


@pytest.fixture
def pg_dsn(pg: PostgresServer) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex}"
    dsn = pg.create_database(name)
    yield dsn
    # A test that left the server down keeps its throw-away database; the next
    # ``pg`` fixture restarts the server and the whole cluster is deleted at the end.
    if pg.is_running():
        pg.drop_database(name, force=True)


@pytest.fixture
def redis_srv(redis_server: RedisServer) -> RedisServer:
    redis_server.ensure_running()
    redis_server.flush()
    return redis_server


@pytest.fixture
def redis_url(redis_srv: RedisServer) -> str:
    return redis_srv.url


@dataclass(frozen=True)
class Database:
    """One ledger database for a test: ``kind`` is "sqlite" or "postgres"."""

    kind: str
    url: str

    async def open(self) -> Ledger:
        """A new ledger on this database, connected and migrated (close it)."""
        return await open_ledger(self.url)


# The one place the suite's tests are spread over both ledger databases.
@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.production)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Database:
    if request.param == "sqlite":
        return Database("sqlite", f"sqlite:///{tmp_path / 'ledger.db'}")
    dsn: str = request.getfixturevalue("pg_dsn")
    return Database("postgres", dsn)


@pytest.fixture
def database_url(database: Database) -> str:
    return database.url


@pytest.fixture
def make_ledger(database: Database) -> Callable[[], Awaitable[Ledger]]:
    return database.open
