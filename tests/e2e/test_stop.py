"""`codecourier up` stops cleanly on Ctrl-C or SIGTERM, even when the whole process group gets
the signal (a terminal's Ctrl-C, a supervisor), and stores every accepted event first."""

import asyncio
import os
import signal
import time
from pathlib import Path

import aiohttp
import msgspec
import pytest

from tests.e2e.helpers import new_project, post_events, read_all, subscribe
from tests.factories import completed
from tests.processes import Stack, start_stack, stop_stack
from tests.receivers import HttpReceiver

STOP_BOUND_S = 30.0
SIGNALS = [pytest.param(signal.SIGINT, id="SIGINT"), pytest.param(signal.SIGTERM, id="SIGTERM")]


def signal_group_and_wait(stack: Stack, sig: int) -> float:
    """Signal the whole process group of `codecourier up`; the seconds it took to exit."""
    started = time.monotonic()
    os.killpg(stack.process.pid, sig)
    try:
        stack.process.wait(STOP_BOUND_S + 5)
    except Exception:
        stop_stack(stack)
        raise
    return time.monotonic() - started


def account(stack: Stack) -> str:
    return (stack.data_dir.parent / f"{stack.data_dir.name}.log").read_text(errors="replace")


@pytest.mark.parametrize("sig", SIGNALS)
def test_a_signal_to_the_whole_process_group_stops_the_stack(tmp_path: Path, sig: int) -> None:
    stack = start_stack(tmp_path / "data")
    took = signal_group_and_wait(stack, sig)
    assert stack.process.returncode == 0, account(stack)
    assert took < STOP_BOUND_S
    text = account(stack)
    assert "Stopping CodeCourier" in text and "Stopped in" in text, text


async def post_until_stopped(
    session: aiohttp.ClientSession, stack: Stack, tag: str
) -> tuple[list[str], int]:
    """POST small batches until the API is gone: the ids accepted, and how many 503s (each
    with Retry-After) were answered meanwhile."""
    accepted: list[str] = []
    refused = 0
    for n in range(100_000):
        batch = [completed(f"{tag}-late-{n}-{i}", f"wf-{i}") for i in range(5)]
        try:
            status, headers, body = await post_events(session, stack, stack.api_key, batch)
        except aiohttp.ClientError:
            return accepted, refused
        if status == 202:
            accepted += [event["executionId"] for event in batch]
        else:
            assert status == 503, body
            assert body["error"]["code"] == "UNAVAILABLE" and int(headers["Retry-After"]) > 0
            refused += 1
        await asyncio.sleep(0.02)  # a client's pace, not a synchronisation
    raise AssertionError("the API never went away")


@pytest.mark.slow
@pytest.mark.parametrize("sig", SIGNALS)
async def test_every_event_accepted_before_a_group_signal_is_stored(
    tmp_path: Path, session: aiohttp.ClientSession, sig: int
) -> None:
    data_dir = tmp_path / "data"
    first = start_stack(data_dir)
    tag = signal.Signals(sig).name
    try:
        batches = [
            [completed(f"{tag}-{b}-{i}", f"wf-{i % 16}") for i in range(1000)] for b in range(20)
        ]
        for batch in batches:
            status, _, body = await post_events(session, first, first.api_key, batch)
            assert status == 202, body
        started = time.monotonic()
        os.killpg(first.process.pid, sig)
        late, refused = await post_until_stopped(session, first, tag)
        await asyncio.to_thread(first.process.wait, STOP_BOUND_S + 5)
        took = time.monotonic() - started
    finally:
        stop_stack(first)
    told = account(first)
    print(told)
    assert first.process.returncode == 0, told
    assert took < STOP_BOUND_S, told
    assert "every accepted event is stored" in told, told
    assert refused, "events were refused while the stack stopped"
    (data_dir / "local.json").unlink()
    second = start_stack(data_dir)
    try:
        # The first project's key lives in the control plane, which survives the restart.
        second = msgspec.structs.replace(second, api_key=first.api_key)
        logs = await read_all(session, second, first.api_key, 20_000 + len(late), timeout_s=60)
        stored = {log["executionId"] for log in logs}
        assert len(stored) == len(logs) == 20_000 + len(late)
        assert set(late) <= stored
    finally:
        stop_stack(second)


@pytest.mark.slow
async def test_a_restarted_stack_stores_new_events_and_keeps_its_subscriptions(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    """The new broker's offsets start at 0 again: its first batches must not be taken for the
    previous broker's (ClickHouse would drop them as duplicate inserts), and the subscriptions
    made before the restart must reach the new broker's consumers."""
    data_dir = tmp_path / "data"
    async with HttpReceiver() as receiver:
        first = start_stack(data_dir)
        try:
            _, key = await new_project(session, first)
            await subscribe(session, first, key, receiver.url)
            status, _, body = await post_events(session, first, key, [completed("first", "wf")])
            assert status == 202, body
            await read_all(session, first, key, 1)
        finally:
            stop_stack(first)
        (data_dir / "local.json").unlink()
        second = start_stack(data_dir)
        try:
            # The same workflow, so the same partition and offset as the first session's event.
            status, _, body = await post_events(session, second, key, [completed("second", "wf")])
            assert status == 202, body
            logs = await read_all(session, second, key, 2)
            assert sorted(log["executionId"] for log in logs) == ["first", "second"]
            deadline = time.monotonic() + 60
            while not any(b"second" in request.body for request in receiver.requests):
                assert time.monotonic() < deadline, "the subscription was forgotten"
                await asyncio.sleep(0.2)
        finally:
            stop_stack(second)
