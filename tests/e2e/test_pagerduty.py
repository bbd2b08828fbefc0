"""PagerDuty through the whole stack, to a receiver that checks what the Events API v2 checks:
an alert triggers an incident keyed by its alert id, and the resolve closes the same one."""

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e.helpers import call, eventually, new_project, post_run
from tests.processes import Stack, running_stack
from tests.receivers import PagerDutyReceiver

ROUTING_KEY = "R0123456789abcdef0123456789ABCDE"


@pytest.fixture(scope="module")
async def pagerduty() -> AsyncIterator[PagerDutyReceiver]:
    async with PagerDutyReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def pd_stack(
    tmp_path_factory: pytest.TempPathFactory, pagerduty: PagerDutyReceiver
) -> Iterator[Stack]:
    """A stack of this module's own whose PagerDuty endpoint is the local receiver."""
    data_dir: Path = tmp_path_factory.mktemp("pagerduty") / "data"
    env = {"CC_PAGERDUTY_URL": pagerduty.url, "CC_EGRESS_ALLOW_CIDRS": "127.0.0.0/8"}
    with running_stack(data_dir, env) as running:
        yield running


async def _events(receiver: PagerDutyReceiver, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 30
    while len(receiver.requests) < count:
        assert time.monotonic() < deadline, f"{len(receiver.requests)} of {count} events arrived"
        await asyncio.sleep(0.05)
    return [json.loads(r.body) for r in receiver.requests]


async def test_an_alert_triggers_and_its_resolve_closes_the_same_incident(
    pd_stack: Stack, pagerduty: PagerDutyReceiver, session: aiohttp.ClientSession
) -> None:
    _, key = await new_project(session, pd_stack)
    body = {
        "notificationType": "pagerduty",
        "allWorkflows": True,
        "pagerdutyConfig": {"routingKey": ROUTING_KEY},
        "alertConfig": {"rule": "consecutive_failures", "consecutiveFailures": 2,
                        "notifyOnResolve": True},
    }  # fmt: skip
    url = f"{pd_stack.base_url}/api/v1/notifications"
    status, _, created = await call(session, "POST", url, key, json=body)
    assert status == 201, created

    for _ in range(2):
        await post_run(session, pd_stack, key, "wf-pd", "error")
    [trigger] = await _events(pagerduty, 1)
    assert [r.problems for r in pagerduty.requests] == [[]]  # the receiver's checks passed
    assert trigger["routing_key"] == ROUTING_KEY
    assert trigger["event_action"] == "trigger"
    assert trigger["payload"]["severity"] == "error"
    assert trigger["payload"]["source"] == "wf-pd"
    alert_id = trigger["dedup_key"]
    assert alert_id.startswith("alr_")

    await post_run(session, pd_stack, key, "wf-pd", "info")
    _, resolve = await _events(pagerduty, 2)
    assert resolve["event_action"] == "resolve"
    assert resolve["dedup_key"] == alert_id  # the same incident
    assert [r.problems for r in pagerduty.requests] == [[], []]

    async def stored() -> Any:
        # The receiver may hear of the alert before the log sink has stored it.
        status, _, alert = await call(
            session, "GET", f"{pd_stack.base_url}/api/v1/alerts/{alert_id}", key
        )
        assert status in (200, 404), alert
        return alert if status == 200 else None

    alert = await eventually(stored)
    assert alert["data"]["rule"] == "consecutive_failures"
