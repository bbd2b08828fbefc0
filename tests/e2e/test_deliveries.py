"""The delivery log over HTTP: attempts on `delivery-log` -> logsink -> ClickHouse -> the API."""

import asyncio
import json
import time
from typing import Any

import aiohttp
import msgspec
import pytest
from aiokafka import AIOKafkaProducer

from schemas import topics
from schemas.deliveries import DeliveryAttempt
from services.common.clock import iso_ms, now_ms
from services.common.ids import new_id
from tests.e2e.helpers import call, new_key, new_project, subscribe
from tests.processes import Stack
from tests.records import consume_all

T = now_ms() - 60_000  # attempts a minute old, well inside the retention
ROUND = T + 30_000  # a redelivery's round is its time in ms


def attempt(
    project: str, subscription: str, delivery: str, n: int, at_ms: int, **fields: Any
) -> DeliveryAttempt:
    """An attempt as the dispatcher records it (the first of a round carries the payload)."""
    base: dict[str, Any] = {
        "v": 1, "deliveryId": delivery, "eventId": f"evt_{delivery[4:]}",
        "eventType": "workflow.execution.completed", "subscriptionId": subscription,
        "projectId": project, "notificationType": "webhook", "round": 0, "attempt": n,
        "outcome": "delivered", "attemptedAtMs": at_ms, "durationMs": 40 + n,
        "target": "https://hooks.example.com", "responseCode": 200, "responseBody": "ok",
    }  # fmt: skip
    if n == 1:
        payload = {
            "id": base["eventId"], "type": base["eventType"], "timestamp": at_ms,
            "data": {"workflowId": "wf", "workflowName": "café"}, "links": {},
        }  # fmt: skip
        base["payload"] = msgspec.Raw(json.dumps(payload, separators=(",", ":")).encode())
    return DeliveryAttempt(**{**base, **fields})


async def produce(stack: Stack, attempts: list[DeliveryAttempt], key: bytes | None = None) -> None:
    """Put attempts on `delivery-log`, keyed by delivery id unless `key` is given."""
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for a in attempts:
            await producer.send_and_wait(
                topics.DELIVERY_LOG, msgspec.json.encode(a), key=key or a.deliveryId.encode()
            )
    finally:
        await producer.stop()


async def listing(
    session: aiohttp.ClientSession, stack: Stack, key: str, sid: str, query: str = ""
) -> tuple[int, Any]:
    url = f"{stack.base_url}/api/v1/notifications/{sid}/deliveries{query}"
    status, _, body = await call(session, "GET", url, key)
    return status, body


async def wait_listed(
    session: aiohttp.ClientSession, stack: Stack, key: str, sid: str, attempts: int
) -> list[dict[str, Any]]:
    """Poll until the subscription's deliveries hold `attempts` attempts in all."""
    deadline = time.monotonic() + 30
    items: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        status, body = await listing(session, stack, key, sid, "?limit=100")
        assert status == 200, body
        items = body["data"]
        if sum(len(d["attempts"]) for d in items) >= attempts:
            return items
        await asyncio.sleep(0.2)
    raise AssertionError(f"saw {items} instead of {attempts} attempts within 30 s")


class Dataset(msgspec.Struct):
    project: str
    key: str
    sid: str
    ids: list[str]  # d1..d4, oldest first


@pytest.fixture(scope="module")
async def dataset(stack: Stack) -> Dataset:
    """Four deliveries to one subscription: delivered after a retry, redelivered and retrying,
    failed without a response, delivered at once; plus a replay of one attempt."""
    async with aiohttp.ClientSession() as session:
        project, key = await new_project(session, stack)
        sid, _ = await subscribe(session, stack, key)
        d1, d2, d3, d4 = (new_id("dlv_") for _ in range(4))
        first = attempt(
            project, sid, d1, 1, T, outcome="retrying", responseCode=500,
            responseBody="Internal Server Error", error="HTTP 500", nextAttemptAtMs=T + 5000,
        )  # fmt: skip
        retrying = attempt(
            project, sid, d2, 1, ROUND, round=ROUND, outcome="retrying", responseCode=503,
            error="HTTP 503", nextAttemptAtMs=ROUND + 5000,
        )  # fmt: skip
        timed_out = attempt(
            project, sid, d3, 1, T + 2000, outcome="failed", responseCode=None, responseBody="",
            error="connect timeout", durationMs=30_000,
        )  # fmt: skip
        await produce(
            stack,
            [
                first,
                attempt(project, sid, d1, 2, T + 5100),
                attempt(project, sid, d2, 1, T + 1000, outcome="failed", responseCode=404),
                retrying,
                timed_out,
                attempt(project, sid, d4, 1, T + 3000),
            ],
        )
        await wait_listed(session, stack, key, sid, 6)
        # The replay lands in a later insert; a sentinel behind it in the same partition, for
        # another subscription, tells when the sink has passed it.
        other, _ = await subscribe(session, stack, key)
        await produce(
            stack, [first, attempt(project, other, new_id("dlv_"), 1, T)], key=d1.encode()
        )
        await wait_listed(session, stack, key, other, 1)
        return Dataset(project, key, sid, [d1, d2, d3, d4])


async def test_deliveries_are_listed_newest_first_with_their_attempts(
    session: aiohttp.ClientSession, stack: Stack, dataset: Dataset
) -> None:
    d1, d2, d3, d4 = dataset.ids
    status, body = await listing(session, stack, dataset.key, dataset.sid)
    assert status == 200 and body["hasMore"] is False and body["nextCursor"] is None
    items = body["data"]
    assert [d["id"] for d in items] == [d4, d3, d2, d1]
    assert [d["status"] for d in items] == ["delivered", "failed", "retrying", "delivered"]
    by_id = {d["id"]: d for d in items}
    assert by_id[d1] == {
        "id": d1,
        "subscriptionId": dataset.sid,
        "eventId": f"evt_{d1[4:]}",
        "eventType": "workflow.execution.completed",
        "status": "delivered",
        "createdAt": iso_ms(T),
        "lastAttemptAt": iso_ms(T + 5100),
        "attempts": [
            {
                "round": 0,
                "attempt": 1,
                "outcome": "retrying",
                "attemptedAt": iso_ms(T),
                "durationMs": 41,
                "target": "https://hooks.example.com",
                "responseCode": 500,
                "responseBody": "Internal Server Error",
                "error": "HTTP 500",
                "nextAttemptAt": iso_ms(T + 5000),
            },
            {
                "round": 0,
                "attempt": 2,
                "outcome": "delivered",
                "attemptedAt": iso_ms(T + 5100),
                "durationMs": 42,
                "target": "https://hooks.example.com",
                "responseCode": 200,
                "responseBody": "ok",
                "error": None,
                "nextAttemptAt": None,
            },
        ],
    }  # fmt: skip  (the replayed first attempt shows once)
    redelivered = by_id[d2]
    assert [(a["round"], a["outcome"]) for a in redelivered["attempts"]] == [
        (0, "failed"),
        (ROUND, "retrying"),
    ]
    assert redelivered["createdAt"] == iso_ms(T + 1000)
    assert redelivered["lastAttemptAt"] == iso_ms(ROUND)
    assert redelivered["nextAttemptAt"] == iso_ms(ROUND + 5000)  # status from the latest round
    failed = by_id[d3]["attempts"][0]
    assert (failed["responseCode"], failed["error"]) == (None, "connect timeout")
    assert "nextAttemptAt" not in by_id[d3]


async def test_deliveries_page_with_a_signed_cursor_and_filter_by_status(
    session: aiohttp.ClientSession, stack: Stack, dataset: Dataset
) -> None:
    d1, d2, d3, d4 = dataset.ids
    seen, query = [], "?limit=1"
    while True:
        status, body = await listing(session, stack, dataset.key, dataset.sid, query)
        assert status == 200, body
        seen += [d["id"] for d in body["data"]]
        if not body["hasMore"]:
            assert body["nextCursor"] is None
            break
        query = f"?limit=1&cursor={body['nextCursor']}"
    assert seen == [d4, d3, d2, d1]

    status, body = await listing(
        session, stack, dataset.key, dataset.sid, "?status=delivered&limit=1"
    )
    assert [d["id"] for d in body["data"]] == [d4] and body["hasMore"] is True
    cursor = body["nextCursor"]
    status, body = await listing(
        session, stack, dataset.key, dataset.sid, f"?status=delivered&limit=1&cursor={cursor}"
    )
    assert [d["id"] for d in body["data"]] == [d1] and body["hasMore"] is False
    for wanted, ids in (("failed", [d3]), ("retrying", [d2])):
        status, body = await listing(session, stack, dataset.key, dataset.sid, f"?status={wanted}")
        assert status == 200 and [d["id"] for d in body["data"]] == ids

    status, body = await listing(session, stack, dataset.key, dataset.sid, f"?cursor={cursor}")
    assert status == 400 and body["error"]["code"] == "INVALID_CURSOR"  # issued for a filter
    for bad in ("?status=pending", "?limit=0", "?limit=101", "?order=asc"):
        status, body = await listing(session, stack, dataset.key, dataset.sid, bad)
        assert status == 400 and body["error"]["code"] == "VALIDATION_ERROR", bad


async def test_other_projects_and_scopes_see_nothing(
    session: aiohttp.ClientSession, stack: Stack, dataset: Dataset
) -> None:
    d1 = dataset.ids[0]
    _, stranger = await new_project(session, stack)
    status, body = await listing(session, stack, stranger, dataset.sid)
    assert status == 404 and body["error"]["code"] == "NOT_FOUND"
    redeliver = f"{stack.base_url}/api/v1/deliveries/{d1}/redeliver"
    status, _, body = await call(session, "POST", redeliver, stranger)
    assert status == 404 and body["error"]["code"] == "NOT_FOUND"
    assert (await listing(session, stack, dataset.key, "ntf_unknown"))[0] == 404
    reader = (await new_key(session, stack, dataset.key, ["notifications:read"]))["secret"]
    assert (await listing(session, stack, reader, dataset.sid))[0] == 200
    status, _, body = await call(session, "POST", redeliver, reader)
    assert status == 403 and body["error"]["code"] == "SCOPE_DENIED"
    writer = (await new_key(session, stack, dataset.key, ["logs:read"]))["secret"]
    assert (await listing(session, stack, writer, dataset.sid))[0] == 403


async def notifications_for(stack: Stack, delivery_id: str) -> list[dict[str, Any]]:
    """The records on `notifications` for a delivery id, waiting for at least one."""
    for _ in range(40):
        records = [
            json.loads(r.value)
            for r in await consume_all(stack.kafka_bootstrap, topics.NOTIFICATIONS, 1000)
        ]
        mine = [r for r in records if r["deliveryId"] == delivery_id]
        if mine:
            return mine
        await asyncio.sleep(0.25)
    raise AssertionError(f"no notification for {delivery_id}")


async def test_redeliver_queues_the_original_payload_under_the_same_delivery_id(
    session: aiohttp.ClientSession, stack: Stack
) -> None:
    project, key = await new_project(session, stack)
    sid, _ = await subscribe(session, stack, key)
    delivery = new_id("dlv_")
    first = attempt(
        project, sid, delivery, 1, T, outcome="retrying", responseCode=502, nextAttemptAtMs=T + 5000
    )
    await produce(
        stack,
        [first, attempt(project, sid, delivery, 2, T + 5000, outcome="failed", responseCode=410)],
    )
    await wait_listed(session, stack, key, sid, 2)
    patched = {
        "webhookConfig": {
            "url": "https://new.example.com/hook",
            "secret": "a-new-secret-0123456789",
        }
    }
    status, _, _ = await call(
        session, "PATCH", f"{stack.base_url}/api/v1/notifications/{sid}", key, json=patched
    )
    assert status == 200

    before = now_ms()
    status, _, body = await call(
        session, "POST", f"{stack.base_url}/api/v1/deliveries/{delivery}/redeliver", key
    )
    assert status == 202, body
    assert body["data"]["deliveryId"] == delivery and body["data"]["round"] >= before

    (record,) = await notifications_for(stack, delivery)
    assert record["kind"] == "notification"
    assert (record["eventId"], record["subscriptionId"], record["projectId"]) == (
        first.eventId,
        sid,
        project,
    )
    assert (record["round"], record["attempt"]) == (body["data"]["round"], 1)
    assert record["payload"] == json.loads(bytes(first.payload or b""))  # the body first sent
    assert record["destination"]["url"] == "https://new.example.com/hook"  # the current row
    assert record["secretCiphertext"] and "a-new-secret" not in json.dumps(record)

    missing = new_id("dlv_")
    status, _, body = await call(
        session, "POST", f"{stack.base_url}/api/v1/deliveries/{missing}/redeliver", key
    )
    assert status == 404 and body["error"]["code"] == "NOT_FOUND"


async def test_redelivering_to_a_deleted_subscription_is_a_conflict(
    session: aiohttp.ClientSession, stack: Stack
) -> None:
    project, key = await new_project(session, stack)
    sid, _ = await subscribe(session, stack, key)
    delivery = new_id("dlv_")
    await produce(stack, [attempt(project, sid, delivery, 1, T)])
    await wait_listed(session, stack, key, sid, 1)
    status, _, _ = await call(
        session, "DELETE", f"{stack.base_url}/api/v1/notifications/{sid}", key
    )
    assert status == 200
    status, _, body = await call(
        session, "POST", f"{stack.base_url}/api/v1/deliveries/{delivery}/redeliver", key
    )
    assert status == 409 and body["error"]["code"] == "CONFLICT"
    assert sid in body["error"]["message"]
