"""Shared fixtures: real PostgreSQL, Redis, the embedded broker and the whole stack."""

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from msgspec import Struct
from redis import Redis as SyncRedis
from redis.exceptions import RedisError

from services.common.kafka import EmbeddedBroker, free_port

ROOT = Path(__file__).resolve().parent.parent
CLI = str(Path(sys.executable).with_name("codecourier"))
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


class Stack(Struct):
    """A running `codecourier up`: where it listens and the credentials it printed."""

    base_url: str
    admin_token: str
    project_id: str
    api_key: str
    data_dir: Path
    process: subprocess.Popen[bytes]
    kafka_bootstrap: str = ""
    kafka_bootstrap: str = ""


def wait_for_file(
    path: Path, process: subprocess.Popen[bytes], timeout_s: float = 60
) -> dict[str, str]:
    """Wait for a JSON file a child process writes when it is ready."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before it was ready")
        if path.exists():
            return dict(json.loads(path.read_text()))
        time.sleep(0.05)
    raise TimeoutError(f"{path} did not appear within {timeout_s} s")


def start_stack(
    data_dir: Path, extra_env: dict[str, str] | None = None, command: list[str] | None = None
) -> Stack:
    """Start `codecourier up` (or `command`) on free ports and wait until it is ready."""
    kafka_port = free_port()
    env = {
        **os.environ,
        "CC_DATA_DIR": str(data_dir),
        "CC_HTTP_PORT": str(free_port()),
        "CC_KAFKA_PORT": str(kafka_port),
        "CC_LOG_LEVEL": "warning",
        **(extra_env or {}),
    }
    env.pop("CC_KAFKA_BOOTSTRAP", None)
    with (data_dir.parent / f"{data_dir.name}.log").open("wb") as log:
        process = subprocess.Popen(
            command or [CLI, "up"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    creds = wait_for_file(data_dir / "local.json", process)
    return Stack(
        creds["baseUrl"],
        creds["adminToken"],
        creds["projectId"],
        creds["apiKey"],
        data_dir,
        process,
        f"127.0.0.1:{kafka_port}",
    )


def stop_stack(stack: Stack) -> None:
    """SIGTERM, then SIGKILL if it lingers."""
    if stack.process.poll() is None:
        stack.process.send_signal(signal.SIGTERM)
        try:
            stack.process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(stack.process.pid, signal.SIGKILL)
            stack.process.wait()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The whole local stack, shared by the e2e tests."""
    running = start_stack(tmp_path_factory.mktemp("stack") / "data")
    yield running
    stop_stack(running)
