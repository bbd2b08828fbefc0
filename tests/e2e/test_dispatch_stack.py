"""Deliveries through the whole stack: API -> `notifications` -> dispatcher -> real receivers,
then `delivery-log` -> logsink -> ClickHouse -> the deliveries route."""

import asyncio
from typing import Any

import aiohttp

from tests.e2e.helpers import call, eventually, new_project, subscribe
from tests.processes import Stack
from tests.receivers import HttpReceiver, NodeWebhookReceiver, Reply


async def queue_test(session: aiohttp.ClientSession, stack: Stack, key: str, sub: str) -> str:
    url = f"{stack.base_url}/api/v1/notifications/{sub}/test"
    status, _, body = await call(session, "POST", url, key)
    assert status == 202, body
    return str(body["data"]["deliveryId"])


async def test_webhooks_verify_at_a_node_receiver_across_a_rotation_and_are_listed(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    _, key = await new_project(session, stack)
    async with NodeWebhookReceiver() as receiver:
        sub, secret = await subscribe(
            session, stack, key, webhookConfig={"url": receiver.url, "standardWebhooks": True}
        )
        await receiver.program(secrets=[secret])
        delivery = await queue_test(session, stack, key, sub)
        (got,) = await eventually(receiver.received)
        assert got["headers"]["sim-delivery-id"] == delivery
        assert got["headers"]["idempotency-key"] == delivery
        assert got["headers"]["webhook-id"] == delivery
        assert got["sim"] == [{"raw": True, "stringify": True}]  # per secret programmed
        assert got["standard"] == [True]
        assert got["reserialisedEqualsRaw"] is True

        rotate = f"{stack.base_url}/api/v1/notifications/{sub}/rotate-secret"
        status, _, body = await call(session, "POST", rotate, key)
        assert status == 200, body
        fresh = body["data"]["signingSecret"]
        await receiver.reset()
        await receiver.program(secrets=[secret, fresh])
        await queue_test(session, stack, key, sub)
        (signed,) = await eventually(receiver.received)
        # signed with both secrets during the grace period: either verifies
        assert signed["sim"] == [{"raw": True, "stringify": True}] * 2
        assert signed["standard"] == [True, True]

        listing = f"{stack.base_url}/api/v1/notifications/{sub}/deliveries"

        async def listed() -> dict[str, Any] | None:
            status, _, body = await call(session, "GET", listing, key)
            assert status == 200, body
            found = [d for d in body["data"] if d["id"] == delivery]
            return found[0] if found else None

        entry = await eventually(listed)
        assert entry["status"] == "delivered"
        assert [(a["attempt"], a["outcome"], a["responseCode"]) for a in entry["attempts"]] == [
            (1, "delivered", 200)
        ]


async def test_a_410_disables_the_subscription_visibly(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    _, key = await new_project(session, stack)
    async with HttpReceiver([Reply(status=410, body="gone")]) as receiver:
        sub, _ = await subscribe(session, stack, key, receiver.url)
        await queue_test(session, stack, key, sub)

        async def disabled() -> dict[str, Any] | None:
            url = f"{stack.base_url}/api/v1/notifications/{sub}"
            status, _, body = await call(session, "GET", url, key)
            assert status == 200, body
            return body["data"] if body["data"].get("disabledReason") else None

        view = await eventually(disabled)
        assert view["active"] is False and "410" in view["disabledReason"]
        assert len(receiver.requests) == 1  # final: no retry


async def test_a_deleted_subscription_gets_no_more_retries(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    _, key = await new_project(session, stack)
    async with HttpReceiver([Reply(status=503)] * 10) as receiver:
        sub, _ = await subscribe(session, stack, key, receiver.url)
        delivery = await queue_test(session, stack, key, sub)

        async def attempted() -> int:
            return len(receiver.requests)

        await eventually(attempted)
        url = f"{stack.base_url}/api/v1/notifications/{sub}"
        status, _, _ = await call(session, "DELETE", url, key)
        assert status == 200
        # the retry falls due after 5 s (+10%) and is dropped, recorded as failed
        await asyncio.sleep(8)
        assert len(receiver.requests) == 1
        assert receiver.requests[0].headers["sim-delivery-id"] == delivery
