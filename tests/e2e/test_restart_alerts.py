"""The all-in-one mode restarted on the same data directory keeps its alert engine working.

Its embedded broker keeps the log in memory, so the alert engine's changelogs start empty on
every start; tables kept on disk would be ahead of them, which faust refuses.
"""

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest

from schemas import topics
from tests.e2e.helpers import new_project, post_events, subscribe
from tests.factories import completed
from tests.processes import Stack, start_stack, stop_stack
from tests.records import consume_all


async def notified(session: aiohttp.ClientSession, stack: Stack, execution_id: str) -> None:
    """Subscribe to every workflow of a new project, send three executions, wait for the last
    one's notification on the `notifications` topic (the alert engine handled them)."""
    _, key = await new_project(session, stack)
    await subscribe(session, stack, key)
    await asyncio.sleep(1)  # the outbox relay publishes the subscription
    for n in range(3):  # a state write each: more than one changelog record on the partition
        status, _, _ = await post_events(session, stack, key, [completed(f"{execution_id}-{n}")])
        assert status == 202
    execution_id = f"{execution_id}-2"
    deadline = time.monotonic() + 60
    while True:
        await asyncio.sleep(0.5)
        assert stack.process.poll() is None, "the stack stopped"
        records = await consume_all(stack.kafka_bootstrap, topics.NOTIFICATIONS, wait_ms=1000)
        if any(execution_id.encode() in (r.value or b"") for r in records):
            return
        assert time.monotonic() < deadline, "no notification"


@pytest.mark.slow
async def test_a_restart_on_the_same_data_dir_keeps_the_alert_engine_running(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    first = start_stack(data_dir)
    try:
        await notified(session, first, "before-restart")
        await asyncio.sleep(3)  # the engine commits and its tables flush
    finally:
        stop_stack(first)
    (data_dir / "local.json").unlink()
    second = start_stack(data_dir)
    try:
        await notified(session, second, "after-restart")
        assert second.process.poll() is None
    finally:
        stop_stack(second)
