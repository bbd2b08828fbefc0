"""`codecourier events send` and `codecourier logs tail` against the running stack."""

import asyncio
import json
import os
import pty
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from services.eventsend import batches, file_lines
from services.logtail import log_line
from tests.e2e.helpers import call, new_project
from tests.factories import completed
from tests.processes import CLI, Stack

READ_TIMEOUT_S = 15.0


def write_ndjson(path: Path, lines: list[dict[str, Any] | str]) -> Path:
    path.write_text("".join((ln if isinstance(ln, str) else json.dumps(ln)) + "\n" for ln in lines))
    return path


async def cli(
    stack: Stack, key: str, *args: str, stdin: bytes | None = None
) -> tuple[int, str, str]:
    """Run the CLI to completion; (exit code, stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        CLI, *args, "--url", stack.base_url, "--api-key", key,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(stdin), 120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def logged_ids(
    session: aiohttp.ClientSession, stack: Stack, key: str, want: int
) -> list[str]:
    """Execution ids of the project's logs in completion order, waiting until `want` are visible."""
    ids: list[str] = []
    cursor = ""
    deadline = time.monotonic() + READ_TIMEOUT_S
    while len(ids) < want and time.monotonic() < deadline:
        query = "order=asc&limit=1000" + (f"&cursor={cursor}" if cursor else "")
        status, _, body = await call(session, "GET", f"{stack.base_url}/api/v1/logs?{query}", key)
        assert status == 200, body
        ids += [item["executionId"] for item in body["data"]]
        cursor = body["nextCursor"]
        if not body["hasMore"]:
            await asyncio.sleep(0.25)
    return ids


async def post_events(
    session: aiohttp.ClientSession, stack: Stack, key: str, events: list[dict[str, Any]]
) -> None:
    status, _, body = await call(
        session, "POST", f"{stack.base_url}/api/v1/events", key, json={"events": events}
    )
    assert status == 202, body


# ---- pure parts -------------------------------------------------------------------------------


def test_batch_relative_fields_become_file_lines() -> None:
    rename = file_lines([(4, b"{}"), (7, b"{}")])
    assert rename("events[1].endedAt") == "line 7, endedAt"
    assert rename("events[0].cost.total") == "line 4, cost.total"
    assert rename("events[1]") == "line 7"
    assert rename("2 invalid event(s); first: events[0].type.") == (
        "2 invalid event(s); first: line 4, type."
    )
    assert rename("events[9].x") == "events[9].x"


def test_batches_respect_the_count_and_the_body_size() -> None:
    lines = [(n, b"x" * 99) for n in range(1, 8)]
    assert [len(b) for b in batches(lines, 3)] == [3, 3, 1]
    assert [len(b) for b in batches(lines, 10, max_bytes=250)] == [2, 2, 2, 1]


def test_a_log_line_has_time_level_ids_duration_and_cost() -> None:
    item = {"endedAt": "2026-01-01T00:00:01.000Z", "level": "error", "workflowId": "wf",
            "executionId": "ex", "totalDurationMs": 1000, "cost": {"total": 0.0125}}  # fmt: skip
    assert log_line(item) == "2026-01-01T00:00:01.000Z  error  wf  ex  1000 ms  $0.0125"


# ---- events send ------------------------------------------------------------------------------


async def test_send_posts_batches_and_every_event_becomes_a_log(
    session, stack: Stack, tmp_path: Path
) -> None:
    _, key = await new_project(session, stack)
    run = uuid.uuid4().hex[:8]
    events: list[dict[str, Any] | str] = [
        completed(f"ex-{run}-{i}", f"wf-{i % 7}") for i in range(1200)
    ]
    events.insert(600, "")  # blank lines are skipped
    path = write_ndjson(tmp_path / "events.ndjson", events)

    code, out, err = await cli(stack, key, "events", "send", str(path))

    assert code == 0, err
    assert out.startswith("accepted 1200 events in 3 requests, "), out
    assert "events/s" in out
    ids = await logged_ids(session, stack, key, 1200)
    assert sorted(ids) == sorted(f"ex-{run}-{i}" for i in range(1200))


async def test_send_reads_stdin_and_prints_a_json_summary(session, stack: Stack) -> None:
    _, key = await new_project(session, stack)
    body = "".join(json.dumps(completed(f"stdin-{i}")) + "\n" for i in range(5)).encode()

    code, out, err = await cli(
        stack, key, "events", "send", "-", "--batch-size", "2", "--json", stdin=body
    )

    assert code == 0, err
    summary = json.loads(out)
    assert summary["accepted"] == 5 and summary["requests"] == 3
    assert set(summary) == {"accepted", "requests", "retries", "elapsedS", "eventsPerS"}


async def test_a_bad_event_is_reported_by_its_line_in_the_file(
    session, stack: Stack, tmp_path: Path
) -> None:
    _, key = await new_project(session, stack)
    events: list[dict[str, Any] | str] = [completed(f"bad-{i}") for i in range(1, 10)]
    events[2] = ""  # line 3 is blank: line numbers still count it
    good = completed("bad-7")
    events[6] = {**good, "endedAt": "2020-01-01T00:00:00Z"}  # line 7: ends before it started
    path = write_ndjson(tmp_path / "bad.ndjson", events)

    code, _, err = await cli(stack, key, "events", "send", str(path), "--batch-size", "4")

    assert code == 1
    message = err.strip().splitlines()[-1]
    assert message.startswith(f"codecourier: {path}: VALIDATION_ERROR: "), message
    assert "line 7, endedAt: Must not be before startedAt." in message
    assert "events[" not in message and "[request " in message
    assert "4 events before it were accepted" in message  # lines 1, 2, 4, 5


async def test_an_oversized_line_is_refused_before_anything_is_sent(
    session, stack: Stack, tmp_path: Path
) -> None:
    _, key = await new_project(session, stack)
    huge = completed("huge", finalOutput="x" * (256 * 1024))
    path = write_ndjson(tmp_path / "huge.ndjson", [completed("small"), "", huge])

    code, _, err = await cli(stack, key, "events", "send", str(path))

    assert code == 1
    assert err.startswith(f"codecourier: {path}: line 3: event is ")
    assert "256 KiB" in err and "nothing was sent" in err
    assert err.count("\n") == 1


async def test_a_missing_file_is_one_line(session, stack: Stack, tmp_path: Path) -> None:
    code, _, err = await cli(stack, "unused", "events", "send", str(tmp_path / "nope.ndjson"))
    assert code == 1
    assert (
        err == f"codecourier: {tmp_path / 'nope.ndjson'}: cannot read: No such file or directory\n"
    )


# ---- logs tail --------------------------------------------------------------------------------


def _ctrl_c_default() -> None:
    """In the child: Ctrl-C as at a terminal, even when the tests run where SIGINT is ignored
    (a background job of a shell without job control), which a child would inherit."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


async def _read_line(stream: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(stream.readline(), READ_TIMEOUT_S)


async def _wait_for_text(fd: int, text: bytes) -> None:
    """Read a terminal's output until `text` appears."""
    seen = b""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + READ_TIMEOUT_S
    while text not in seen:
        assert loop.time() < deadline, seen
        seen += await asyncio.wait_for(
            loop.run_in_executor(None, os.read, fd, 1024), READ_TIMEOUT_S
        )


async def test_tail_skips_history_then_prints_each_new_completion(session, stack: Stack) -> None:
    _, key = await new_project(session, stack)
    old = [completed(f"old-{i}", f"wf-{i}") for i in range(2)]
    await post_events(session, stack, key, old)
    assert len(await logged_ids(session, stack, key, 2)) == 2

    # stderr on a terminal: the command says when it has skipped history and is following.
    terminal, tty = pty.openpty()
    tail = await asyncio.create_subprocess_exec(
        CLI, "logs", "tail", "--json", "--interval", "0.5",
        "--url", stack.base_url, "--api-key", key,
        stdout=asyncio.subprocess.PIPE, stderr=tty,
    )  # fmt: skip
    os.close(tty)
    try:
        await _wait_for_text(terminal, b"skipped 2 earlier logs; following")
        new = [completed(f"new-{i}", f"wf-{i}") for i in range(3)]
        await post_events(session, stack, key, new)
        assert tail.stdout is not None
        lines = [json.loads(await _read_line(tail.stdout)) for _ in range(3)]
    finally:
        tail.terminate()
        await tail.wait()
        os.close(terminal)

    assert {item["executionId"] for item in lines} == {"new-0", "new-1", "new-2"}
    assert {"id", "workflowId", "level", "startedAt", "endedAt", "cost"} <= set(lines[0])


async def test_tail_since_start_prints_history_and_ctrl_c_exits_quietly(
    session, stack: Stack
) -> None:
    _, key = await new_project(session, stack)
    await post_events(
        session,
        stack,
        key,
        [completed("first", "wf-cli", duration_ms=1000, level="error"), completed("second")],
    )
    tail = await asyncio.create_subprocess_exec(
        CLI, "logs", "tail", "--since-start", "--level", "error",
        "--url", stack.base_url, "--api-key", key,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        preexec_fn=_ctrl_c_default,
    )  # fmt: skip
    assert tail.stdout is not None and tail.stderr is not None
    try:
        line = (await _read_line(tail.stdout)).decode()
    finally:
        tail.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(tail.wait(), READ_TIMEOUT_S)

    assert "  error  wf-cli  first  1000 ms  $0.01" in line
    assert code == 0
    assert await tail.stdout.read() == b""  # "second" is info: filtered out
    assert await tail.stderr.read() == b""
