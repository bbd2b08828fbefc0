"""Shared fixtures: real PostgreSQL, Redis, the embedded broker and the whole stack."""

import asyncio
import os
import secrets
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import asyncpg
import pytest
from redis import Redis as SyncRedis
from redis.exceptions import RedisError

from services.common.broker import EmbeddedBroker
from tests import external
from tests.processes import Stack, running_stack

PG_DSN = os.environ.get("CC_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("CC_TEST_REDIS", "redis://127.0.0.1:6379/15")


def _require_marker(request: pytest.FixtureRequest, service: str) -> None:
    """Fail a test that reaches `service` unmarked: `-m "not <service>"` must leave out every
    test that needs the service."""
    if request.node.get_closest_marker(service) is None:
        pytest.fail(f"{request.node.nodeid} needs {service}: mark it @pytest.mark.{service}")


def _skip_or_fail(reason: str) -> None:
    """Skip with the reason printed; in CI a missing service is a failure, not a skip."""
    if os.environ.get("CC_REQUIRE_SERVICES") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def _in_thread(coro_fn: "Callable[[], Coroutine[Any, Any, Any]]") -> Any:
    """Run a coroutine on a private loop (sync fixtures may be used from async ones)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro_fn()).result()


def pg_execute(sql: str) -> None:
    """Run one statement on the machine's PostgreSQL (from sync or async code)."""

    async def run() -> None:
        conn = await asyncio.wait_for(asyncpg.connect(PG_DSN), 5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    _in_thread(run)


@pytest.fixture
def pg_url(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """A fresh schema in the machine's PostgreSQL: (SQLAlchemy URL, schema name)."""
    _require_marker(request, "postgres")
    schema = f"cc_test_{secrets.token_hex(6)}"
    try:
        pg_execute(f'CREATE SCHEMA "{schema}"')
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        _skip_or_fail(f"PostgreSQL unreachable at {PG_DSN}: {exc!r}")
    try:
        yield PG_DSN.replace("postgresql://", "postgresql+asyncpg://"), schema
    finally:
        pg_execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def pg_database(request: pytest.FixtureRequest) -> Iterator[str]:
    """A throwaway database in the machine's PostgreSQL: its URL."""
    _require_marker(request, "postgres")
    name = f"cc_e2e_{os.getpid()}_{int(time.time())}"
    try:
        pg_execute(f'CREATE DATABASE "{name}"')
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        _skip_or_fail(f"PostgreSQL unreachable at {PG_DSN}: {exc!r}")
    yield PG_DSN.rsplit("/", 1)[0] + f"/{name}"
    pg_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def redis_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """The machine's Redis (database 15 unless CC_TEST_REDIS says, flushed before and after)."""
    _require_marker(request, "redis")
    client = SyncRedis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except (OSError, RedisError) as exc:
        client.close()
        _skip_or_fail(f"Redis unreachable at {REDIS_URL}: {exc!r}")
    client.flushdb()
    yield REDIS_URL
    client.flushdb()
    client.close()


@pytest.fixture(scope="session")
async def broker(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """One embedded broker for the whole session (group joins are slow; share them), or one
    Kafka cluster under the container profile."""
    if services := external.active():
        yield services.kafka("session")
        return
    embedded = EmbeddedBroker(0, tmp_path_factory.mktemp("broker") / "broker.log")
    bootstrap = await embedded.start()
    yield bootstrap
    embedded.stop()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The whole local stack, shared by the e2e tests."""
    with running_stack(tmp_path_factory.mktemp("stack") / "data") as running:
        yield running
