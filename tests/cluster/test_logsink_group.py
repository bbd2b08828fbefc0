"""Two log sink processes in one consumer group split `executions` and store every event once,
on a ClickHouse server: the scale-out chDB cannot show, since it admits one process per data
directory. Runs in the container profile (`make test-containers`) only."""

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest

from schemas import topics
from tests import external
from tests.e2e.helpers import new_project, post_events, read_all
from tests.factories import completed
from tests.members import Group
from tests.processes import running_stack

PARTITIONS = 8
EVENTS, WORKFLOWS = 4000, 64


@pytest.mark.slow
async def test_two_log_sinks_in_one_group_store_every_event_once(tmp_path: Path) -> None:
    services = external.active()
    if services is None:
        pytest.skip("needs a ClickHouse server and Kafka: run `make test-containers`")
    data_dir = tmp_path / "data"
    # `up` on a ClickHouse server runs its log sink as a child process: the group's first member.
    with running_stack(data_dir, {"CC_KAFKA_PARTITIONS": str(PARTITIONS)}) as stack:
        settings = {"CC_CLICKHOUSE_URL": services.clickhouse(str(data_dir)),
                    "CC_KAFKA_PARTITIONS": str(PARTITIONS)}  # fmt: skip
        second = Group("logsink", stack.kafka_bootstrap, tmp_path, settings).start(1)
        try:
            deadline = time.monotonic() + 120
            member = second.members[0]
            # The second member holds a share, so the first holds the rest.
            while not (shares := member.assignments(topics.EXECUTIONS)) or len(shares[-1]) in (
                0,
                PARTITIONS,
            ):
                assert member.alive and time.monotonic() < deadline, "no share for the second sink"
                await asyncio.sleep(0.2)
            async with aiohttp.ClientSession() as session:
                _, key = await new_project(session, stack)
                events = [completed(f"ex-{n}", f"wf-{n % WORKFLOWS}") for n in range(EVENTS)]
                for start in range(0, EVENTS, 500):
                    status, _, body = await post_events(
                        session, stack, key, events[start : start + 500]
                    )
                    assert status == 202, body
                logs = await read_all(session, stack, key, EVENTS, timeout_s=120)
            ids = [log["executionId"] for log in logs]
            assert sorted(ids) == sorted(e["executionId"] for e in events)  # each once
            stored = sum(line["executions"] for line in member.lines("logsink.batch"))
            assert 0 < stored < EVENTS, "both members stored a part"
        finally:
            second.stop()
