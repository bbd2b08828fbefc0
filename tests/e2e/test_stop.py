"""`codecourier up` stops cleanly on Ctrl-C or SIGTERM, even when the whole process group gets
the signal (a terminal's Ctrl-C, a supervisor), and stores every accepted event first."""

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import Stack, start_stack, stop_stack
from tests.e2e.helpers import completed, post_events, read_all

STOP_BOUND_S = 30.0
SIGNALS = [pytest.param(signal.SIGINT, id="SIGINT"), pytest.param(signal.SIGTERM, id="SIGTERM")]


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


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
