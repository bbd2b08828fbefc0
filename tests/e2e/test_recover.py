"""Endpoint health and recover on a running stack: a receiver that fails until its deliveries end
failed, then heals; `recover` sends each failed delivery once more under its own id, and the
subscription's health moves from failing to healthy."""

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from tests.e2e.helpers import call, eventually, new_project, subscribe
from tests.processes import Stack, running_stack
from tests.receivers import HttpReceiver, Reply

DELIVERIES = 3


@pytest.fixture(scope="module")
def quick_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack that may deliver to loopback receivers and retries within a second."""
    env = {"CC_EGRESS_ALLOW_CIDRS": "127.0.0.0/8", "CC_RETRY_DELAYS": "0.3,0.3"}
    with running_stack(tmp_path_factory.mktemp("recover") / "data", env) as running:
        yield running


async def _view(session: aiohttp.ClientSession, stack: Stack, key: str, sub: str) -> Any:
    status, _, body = await call(
        session, "GET", f"{stack.base_url}/api/v1/notifications/{sub}", key
    )
    assert status == 200, body
    return body["data"]


async def test_recover_sends_each_failed_delivery_once_more_and_health_recovers(
    quick_stack: Stack, session: aiohttp.ClientSession
) -> None:
    stack = quick_stack
    _, key = await new_project(session, stack)
    async with HttpReceiver([Reply(status=500, body="down")] * 1000) as receiver:
        sub, _ = await subscribe(session, stack, key, receiver.url)
        ids = []
        for _ in range(DELIVERIES):
            url = f"{stack.base_url}/api/v1/notifications/{sub}/test"
            status, _, body = await call(session, "POST", url, key)
            assert status == 202, body
            ids.append(body["data"]["deliveryId"])
        listing = f"{stack.base_url}/api/v1/notifications/{sub}/deliveries?status=failed"

        async def all_failed() -> bool:
            status, _, body = await call(session, "GET", listing, key)
            assert status == 200, body
            return {d["id"] for d in body["data"]} == set(ids)

        await eventually(all_failed, timeout_s=60)
        health = (await _view(session, stack, key, sub))["health"]
        assert health["status"] == "failing" and health["successRate24h"] == 0.0
        assert "failingSince" in health and "lastSuccessAt" not in health
        failed_requests = len(receiver.requests)

        receiver.replies.clear()  # healed: 200 from now on
        since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
        recover = f"{stack.base_url}/api/v1/notifications/{sub}/recover"
        status, _, body = await call(session, "POST", recover, key, json={"since": since})
        assert status == 202, body
        assert body["data"] == {"deliveries": DELIVERIES}

        async def resent() -> list[str]:
            later = receiver.requests[failed_requests:]
            return [r.headers["sim-delivery-id"] for r in later] if len(later) >= DELIVERIES else []

        await eventually(resent)
        await asyncio.sleep(2)  # nothing more comes
        later = receiver.requests[failed_requests:]
        assert sorted(r.headers["sim-delivery-id"] for r in later) == sorted(ids)

        async def healthy() -> Any:
            health = (await _view(session, stack, key, sub))["health"]
            return health if health["status"] == "healthy" else None

        health = await eventually(healthy)
        assert health["successRate24h"] == 1.0 and "failingSince" not in health
