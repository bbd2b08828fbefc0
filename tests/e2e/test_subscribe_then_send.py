"""A subscription applies to an execution sent right after it was created (issue 9, finding 4).

The API answers a subscription change only once its markers are on every partition of
`executions`; an execution posted after that answer follows the marker on its partition, so the
engine has the subscription whatever the order in which it reads its topics.
"""

import asyncio
import json
import time

import aiohttp
from aiokafka.structs import TopicPartition

from schemas import topics
from services.alerts.ticks import OffsetReader
from tests.e2e.helpers import new_project, post_events, subscribe
from tests.factories import completed
from tests.processes import Stack
from tests.receivers import HttpReceiver
from tests.records import consume_all

ROUNDS = 5
MARKER = b'{"kind":"subscription"'


async def subscribe_and_send_at_once(
    session: aiohttp.ClientSession, stack: Stack, url: str, execution_id: str
) -> None:
    _, key = await new_project(session, stack)
    await subscribe(session, stack, key, url)
    status, _, accepted = await post_events(session, stack, key, [completed(execution_id)])
    assert status == 202, accepted


def delivered(receiver: HttpReceiver) -> set[str]:
    return {json.loads(r.body)["data"]["executionId"] for r in receiver.requests}


async def test_an_execution_sent_right_after_subscribing_is_notified_every_time(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    async with HttpReceiver() as receiver:
        expected = set()
        for n in range(ROUNDS):  # each round on a warmer stack than the one before
            execution_id = f"right-after-{n}-{time.time_ns()}"
            await subscribe_and_send_at_once(session, stack, receiver.url, execution_id)
            expected.add(execution_id)
        deadline = time.monotonic() + 60
        while not expected <= delivered(receiver):
            assert time.monotonic() < deadline, f"never delivered: {expected - delivered(receiver)}"
            await asyncio.sleep(0.2)
    dead = await consume_all(stack.kafka_bootstrap, topics.EXECUTIONS_DLQ, wait_ms=1000)
    assert not [r for r in dead if (r.value or b"").startswith(MARKER)]  # the sink skips them


async def test_the_answer_to_a_subscription_change_comes_after_its_markers_and_records(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    _, key = await new_project(session, stack)
    reader = OffsetReader(stack.kafka_bootstrap)
    try:
        partitions = (await reader.partition_counts([topics.SUBSCRIPTIONS]))[topics.SUBSCRIPTIONS]
        tps = [TopicPartition(topics.SUBSCRIPTIONS, p) for p in range(partitions)]
        await reader.ends(tps)  # connected before the change: the ends below are read at once
        created = []
        for _ in range(3):
            subscription, _ = await subscribe(session, stack, key)
            created.append((subscription, await reader.ends(tps)))
    finally:
        await reader.stop()
    records = await consume_all(stack.kafka_bootstrap, topics.SUBSCRIPTIONS)
    markers = {
        (r.partition, r.offset): r
        for r in await consume_all(stack.kafka_bootstrap, topics.EXECUTIONS)
        if r.value and r.value.startswith(MARKER)
    }
    for sub_id, ends in created:
        mine = [r for r in records if r.key.startswith(f"{sub_id}/".encode())]
        on_log = sorted(r.partition for r in mine if r.offset < ends[TopicPartition(
            topics.SUBSCRIPTIONS, r.partition)])  # fmt: skip
        assert on_log == list(range(partitions)), f"{sub_id} was answered before it was published"
        for r in mine:
            offset = json.loads(r.value)["markerOffset"]
            assert json.loads(markers[(r.partition, offset)].value)["id"] == sub_id
