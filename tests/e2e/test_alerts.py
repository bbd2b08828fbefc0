"""Alerts on a running stack with a short cooldown: a consecutive_failures alert is listed as
firing within 5 s of its notification; once acknowledged it repeats no more while the failures
go on; a success resolves it and the resolve reaches the receiver under the same alert id."""

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e.helpers import call, new_project, post_run, subscribe
from tests.processes import Stack, running_stack
from tests.receivers import HttpReceiver

COOLDOWN_S = 2
LISTED_WITHIN_S = 5.0


@pytest.fixture(scope="module")
def short_cooldown(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack of this module's own, whose alerts may repeat every COOLDOWN_S seconds."""
    data_dir: Path = tmp_path_factory.mktemp("alerts") / "data"
    env = {"CC_ALERT_COOLDOWN_SECONDS": str(COOLDOWN_S)}
    with running_stack(data_dir, env) as running:
        yield running


async def _alerts(
    session: aiohttp.ClientSession, stack: Stack, key: str, query: str
) -> list[dict[str, Any]]:
    status, _, body = await call(session, "GET", f"{stack.base_url}/api/v1/alerts{query}", key)
    assert status == 200, body
    return list(body["data"])


async def _first_alert(
    session: aiohttp.ClientSession, stack: Stack, key: str, receiver: HttpReceiver, workflow: str
) -> str:
    """Subscribe `receiver` to a one-failure rule, fail `workflow` once, and wait for the alert's
    first notification; the subscription's id."""
    config = {"rule": "consecutive_failures", "consecutiveFailures": 1, "notifyOnResolve": True}
    sub_id, _ = await subscribe(session, stack, key, receiver.url, alertConfig=config)
    await post_run(session, stack, key, workflow, "error")
    deadline = time.monotonic() + 30
    while not receiver.requests:
        assert time.monotonic() < deadline, "no alert notification"
        await asyncio.sleep(0.05)
    return sub_id


async def test_an_alert_is_listed_acknowledged_and_resolved(
    short_cooldown: Stack, session: aiohttp.ClientSession
) -> None:
    stack = short_cooldown
    _, key = await new_project(session, stack)
    async with HttpReceiver() as receiver:
        await _first_alert(session, stack, key, receiver, "wf-ack")
        notified = time.monotonic()  # the notification was produced before this
        first = json.loads(receiver.requests[0].body)
        alert_id = first["data"]["alert"]["id"]

        listed: list[dict[str, Any]] = []
        while not listed:
            assert time.monotonic() - notified < LISTED_WITHIN_S, "not listed within 5 s"
            listed = [a for a in await _alerts(session, stack, key, "?state=firing")
                      if a["id"] == alert_id]  # fmt: skip
            await asyncio.sleep(0.1)
        assert listed[0]["rule"] == "consecutive_failures" and listed[0]["workflowId"] == "wf-ack"
        assert listed[0]["acknowledged"] is False and listed[0]["notificationCount"] == 1

        url = f"{stack.base_url}/api/v1/alerts/{alert_id}/acknowledge"
        status, _, acked = await call(session, "POST", url, key)
        assert status == 200 and acked["data"]["acknowledged"] is True, acked
        # The answer came after the markers on executions: every failure below follows them.
        for _ in range(4 * COOLDOWN_S):  # failing on, well past the cooldown
            await post_run(session, stack, key, "wf-ack", "error")
            await asyncio.sleep(0.5)
        await asyncio.sleep(3)
        assert len(receiver.requests) == 1, "a repeat after the acknowledgement"

        await post_run(session, stack, key, "wf-ack", "info")
        deadline = time.monotonic() + 30
        while len(receiver.requests) < 2:
            assert time.monotonic() < deadline, "no resolve notification"
            await asyncio.sleep(0.1)
        resolved = json.loads(receiver.requests[1].body)
        assert resolved["type"] == "workflow.alert.resolved"
        assert resolved["data"]["alert"]["id"] == alert_id
        assert resolved["id"] != first["id"]  # its own event id

        deadline = time.monotonic() + 10
        while True:
            status, _, one = await call(
                session, "GET", f"{stack.base_url}/api/v1/alerts/{alert_id}", key
            )
            assert status == 200, one
            if one["data"]["state"] == "resolved":
                break
            assert time.monotonic() < deadline, one
            await asyncio.sleep(0.2)
        alert = one["data"]
        assert alert["acknowledged"] is True and alert["notificationCount"] == 2
        assert alert["resolvedAt"] is not None and alert["executionId"].startswith("error-")


async def test_deleting_the_subscription_of_a_firing_alert_resolves_it(
    short_cooldown: Stack, session: aiohttp.ClientSession
) -> None:
    stack = short_cooldown
    _, key = await new_project(session, stack)
    async with HttpReceiver() as receiver:
        sub_id = await _first_alert(session, stack, key, receiver, "wf-gone")
        alert_id = json.loads(receiver.requests[0].body)["data"]["alert"]["id"]
        url = f"{stack.base_url}/api/v1/alerts/{alert_id}"
        deadline = time.monotonic() + LISTED_WITHIN_S
        while (await call(session, "GET", url, key))[0] != 200:
            assert time.monotonic() < deadline, "not listed within 5 s"
            await asyncio.sleep(0.1)

        status, _, _ = await call(
            session, "DELETE", f"{stack.base_url}/api/v1/notifications/{sub_id}", key
        )
        assert status == 200
        deadline = time.monotonic() + 10
        while (alert := (await call(session, "GET", url, key))[2]["data"])["state"] != "resolved":
            assert time.monotonic() < deadline, alert
            await asyncio.sleep(0.2)
        assert alert["reason"] == "Resolved: the subscription was deleted."
        assert alert["resolvedAt"] is not None and alert["notificationCount"] == 1
        assert len(receiver.requests) == 1  # recorded, not sent: the subscription is gone
