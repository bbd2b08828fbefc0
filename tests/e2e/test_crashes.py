"""A child of `codecourier up` killed with SIGKILL is restarted: the API keeps answering
meanwhile, the restart is counted on /metrics, and the service works again afterwards."""

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import Stack, start_stack, stop_stack
from tests.e2e.helpers import call, completed, new_project, post_events, read_all
from tests.receivers import HttpReceiver

SERVICES = {"services.cli alerts": "alerts", "services.cli dispatcher": "dispatcher"}


@pytest.fixture(scope="module")
def crash_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack of its own: killing children of the shared one would slow the other tests."""
    running = start_stack(tmp_path_factory.mktemp("crashes") / "data")
    yield running
    stop_stack(running)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def children(parent: int) -> dict[str, int]:
    """The services `up` runs as child processes, by name: alerts, dispatcher, broker."""
    found = {}
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError):
            continue
        if int(stat[1]) != parent or stat[0] == "Z":
            continue
        for fragment, name in SERVICES.items():
            if fragment in cmdline:
                found[name] = int(entry.name)
        if " broker --listener-url " in cmdline:
            found["broker"] = int(entry.name)
    return found


async def restarted(stack: Stack, session: aiohttp.ClientSession, name: str, old: int) -> None:
    """Wait for a new `name` process, checking that the API answers all along."""
    deadline = time.monotonic() + 60
    while children(stack.process.pid).get(name, old) == old:
        assert time.monotonic() < deadline, f"{name} was not restarted"
        assert stack.process.poll() is None, "the stack stopped"
        status, _, _ = await call(session, "GET", f"{stack.base_url}/healthz")
        assert status == 200
        status, _, body = await call(
            session, "GET", f"{stack.base_url}/api/v1/logs?limit=1", stack.api_key
        )
        assert status == 200, body
        await asyncio.sleep(0.2)


async def restarts_counted(stack: Stack, session: aiohttp.ClientSession, name: str) -> float:
    async with session.get(f"{stack.base_url}/metrics") as response:
        text = await response.text()
    (line,) = [
        row
        for row in text.splitlines()
        if row.startswith(f'cc_local_restarts_total{{service="{name}"}}')
    ]
    return float(line.split()[-1])


async def delivered(stack: Stack, session: aiohttp.ClientSession, tag: str) -> None:
    """Subscribe a fresh project's receiver and report executions until one is delivered
    (through the alert engine and the dispatcher) and stored (through the log sink)."""
    _, key = await new_project(session, stack, name=tag)
    async with HttpReceiver() as receiver:
        status, _, body = await call(
            session, "POST", f"{stack.base_url}/api/v1/notifications", key,
            json={"notificationType": "webhook", "allWorkflows": True,
                  "webhookConfig": {"url": receiver.url}},
        )  # fmt: skip
        assert status == 201, body
        deadline = time.monotonic() + 90
        sent = 0
        while not receiver.requests:
            assert time.monotonic() < deadline, "nothing was delivered"
            # Until the restarted service has caught up, an execution may go unnoticed: send
            # another one each second rather than guess when it is ready.
            status, _, body = await post_events(session, stack, key, [completed(f"{tag}-{sent}")])
            if status == 202:
                sent += 1
            else:
                assert status == 503, body  # the broker is coming back
            for _ in range(10):
                if receiver.requests:
                    break
                await asyncio.sleep(0.1)
        assert tag.encode() in receiver.requests[0].body
    await read_all(session, stack, key, 1, timeout_s=30)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["alerts", "dispatcher", "broker"])
async def test_a_killed_child_is_restarted_and_works_again(
    crash_stack: Stack, session: aiohttp.ClientSession, name: str
) -> None:
    before = await restarts_counted(crash_stack, session, name)
    old = children(crash_stack.process.pid)[name]
    os.kill(old, signal.SIGKILL)
    await restarted(crash_stack, session, name, old)
    await delivered(crash_stack, session, f"after-{name}-kill")
    assert await restarts_counted(crash_stack, session, name) == before + 1
    assert crash_stack.process.poll() is None
