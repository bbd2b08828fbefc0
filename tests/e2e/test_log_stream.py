"""One log stream: `codecourier up` off a terminal writes one JSON line per entry from every
process it runs, the alert engine's faust worker included, and tells the stack's story in them;
its stdout carries only its own account (the banner and the stop)."""

import asyncio
import re
import signal
from pathlib import Path

import aiohttp
import msgspec
import pytest

from tests.e2e.helpers import eventually, post_events
from tests.factories import completed
from tests.processes import running_stack

# What `up` prints on stdout: the banner once the stack is ready, the account of its stop.
ACCOUNT = re.compile(
    r"|CodeCourier is running .*|Stopping CodeCourier .*|Stopped in .*"
    r"|  (Base URL|Admin token|Project|API key|Console|Email|Password|Saved to|Try:|Stop with) .*"
    r"|  (events|dispatcher|alerts|log sink|api|broker) +\S.*"
)
STORY = ("broker.started", "api.listening", "logsink.started", "alerts.starting",
         "dispatcher.started", "http.request", "logsink.batch", "local.stopped")  # fmt: skip


async def logged(log: Path, *names: str) -> bool:
    """Whether the stack's log holds an entry of every named event."""
    text = await asyncio.to_thread(log.read_text, errors="replace")
    return all(f'"event":"{name}"' in text for name in names)


@pytest.mark.slow
async def test_up_off_a_terminal_writes_json_lines_that_tell_the_stack_starting(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    log = tmp_path / "data.log"  # stdout and stderr of `up` and of every child together
    with running_stack(tmp_path / "data", {"CC_LOG_LEVEL": "info"}) as stack:
        await eventually(lambda: logged(log, "alerts.table_indexed", "dispatcher.started"), 90)
        status, _, _ = await post_events(session, stack, stack.api_key, [completed("ex-log")])
        assert status == 202
        await eventually(lambda: logged(log, "logsink.batch"))
        stack.process.send_signal(signal.SIGINT)
        assert await asyncio.to_thread(stack.process.wait, 40) == 0
    lines = (await asyncio.to_thread(log.read_text)).splitlines()
    entries = [msgspec.json.decode(line) for line in lines if line.startswith("{")]
    others = [line for line in lines if not line.startswith("{")]
    assert all(ACCOUNT.fullmatch(line) for line in others), others  # no faust line or table
    assert all({"level", "event", "timestamp"} <= entry.keys() for entry in entries), lines
    events = [entry["event"] for entry in entries]
    assert all(name in events for name in STORY), events
    assert events.index("broker.started") < events.index("api.listening")
    assert events.index("api.listening") < events.index("logsink.started")
    assert events[-1] == "local.stopped"
