"""Shared fixtures: real PostgreSQL, Redis, the embedded broker and the whole stack."""

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import asyncpg
import pytest
from redis import Redis as SyncRedis
from redis.exceptions import RedisError

from services.common.kafka import EmbeddedBroker
from tests.processes import Stack, running_stack

PG_DSN = os.environ.get("CC_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("CC_TEST_REDIS", "redis://127.0.0.1:6379/15")


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
def pg_url() -> Iterator[tuple[str, str]]:
    """A fresh schema in the machine's PostgreSQL: (SQLAlchemy URL, schema name)."""
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
def redis_url() -> Iterator[str]:
    """The machine's Redis (database 15, flushed before and after)."""
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
    """One embedded broker for the whole session (group joins are slow; share them)."""
    embedded = EmbeddedBroker(0, tmp_path_factory.mktemp("broker") / "broker.log")
    bootstrap = await embedded.start()
    yield bootstrap
    embedded.stop()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The whole local stack, shared by the e2e tests."""
    with running_stack(tmp_path_factory.mktemp("stack") / "data") as running:
        yield running
