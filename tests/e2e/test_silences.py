"""A silence on a running stack: an alert it matches reaches no receiver; ending the silence
while the alert still fires sends exactly one notification. Each of its versions is on
`executions` as a marker before its compacted records, which carry the markers' offsets."""

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta

import aiohttp

from schemas import topics
from tests.e2e.helpers import call, new_project, post_events, subscribe
from tests.factories import completed
from tests.processes import Stack
from tests.receivers import HttpReceiver
from tests.records import consume_all

QUIET_S = 8  # ample for an unmuted alert to arrive (the first delivery takes about a second)
RELEASE_DEADLINE_S = 60  # the next tick after the end releases it (CC_TICK_SECONDS, 15 s)


async def test_a_silenced_alert_is_not_delivered_and_one_follows_when_the_silence_ends(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    _, key = await new_project(session, stack)
    async with HttpReceiver() as receiver:
        await subscribe(session, stack, key, receiver.url,
                        alertConfig={"rule": "consecutive_failures", "consecutiveFailures": 1})  # fmt: skip
        ends = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        status, _, created = await call(
            session, "POST", f"{stack.base_url}/api/v1/silences", key,
            json={"comment": "maintenance", "matchers": {"workflowIds": ["wf-quiet"]},
                  "endsAt": ends},
        )  # fmt: skip
        assert status == 201, created
        silence_id = created["data"]["id"]
        await asyncio.sleep(0.1)  # the execution ends after the silence began
        failure = completed(f"fail-{time.time_ns()}", "wf-quiet", ended=datetime.now(UTC),
                            level="error")  # fmt: skip
        status, _, accepted = await post_events(session, stack, key, [failure])
        assert status == 202, accepted
        await asyncio.sleep(QUIET_S)
        assert receiver.requests == []

        status, _, ended = await call(
            session, "DELETE", f"{stack.base_url}/api/v1/silences/{silence_id}", key
        )
        assert status == 200 and ended["data"]["state"] == "expired", ended
        deadline = time.monotonic() + RELEASE_DEADLINE_S
        while not receiver.requests:
            assert time.monotonic() < deadline, "no notification after the silence ended"
            await asyncio.sleep(0.2)
        await asyncio.sleep(QUIET_S)  # more ticks: still one
        assert len(receiver.requests) == 1
        body = json.loads(receiver.requests[0].body)
        assert body["data"]["workflowId"] == "wf-quiet"
        assert body["data"]["alert"]["rule"] == "consecutive_failures"

    records = [
        r for r in await consume_all(stack.kafka_bootstrap, topics.SILENCES)
        if r.key.startswith(f"{silence_id}/".encode())
    ]  # fmt: skip
    markers = {
        (r.partition, r.offset): json.loads(r.value)
        for r in await consume_all(stack.kafka_bootstrap, topics.EXECUTIONS)
        if r.value and r.value.startswith(b'{"kind":"silence"')
    }
    assert any(json.loads(r.value)["version"] == 2 for r in records)  # the ended version
    for r in records:  # created and ended: each version after its marker on its partition
        record = json.loads(r.value)
        marker = markers[(r.partition, record["markerOffset"])]
        assert (marker["id"], marker["version"]) == (silence_id, record["version"])
    dead = await consume_all(stack.kafka_bootstrap, topics.EXECUTIONS_DLQ, wait_ms=1000)
    assert not [r for r in dead if (r.value or b"").startswith(b'{"kind":"silence"')]
