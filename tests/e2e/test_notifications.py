"""Notification subscriptions over HTTP: validation, secrets, limits, and the outbox to Kafka."""

import asyncio
import json
import sqlite3
from typing import Any

from tests.e2e.helpers import call, new_key, new_project, post_events, read_all
from tests.factories import completed
from tests.processes import Stack
from tests.records import consume_all

URL = "/api/v1/notifications"


def webhook(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "notificationType": "webhook",
        "allWorkflows": True,
        "webhookConfig": {"url": "https://hooks.example.com/cc"},
    }
    body.update(fields)
    return body


async def create(session, stack: Stack, key: str, body: dict[str, Any]) -> tuple[int, Any]:
    status, _, data = await call(session, "POST", f"{stack.base_url}{URL}", key, json=body)
    return status, data


async def test_create_shows_the_secret_once_and_never_again(session, stack: Stack) -> None:
    _, key = await new_project(session, stack)
    status, body = await create(session, stack, key, webhook(levelFilter=["error"]))
    assert status == 201
    secret = body["data"]["signingSecret"]
    sub = body["data"]["subscription"]
    assert secret.startswith("whsec_") and sub["id"].startswith("ntf_")
    assert sub["webhookConfig"] == {
        "url": "https://hooks.example.com/cc",
        "hasSecret": True,
        "standardWebhooks": False,
    }
    assert sub["levelFilter"] == ["error"] and sub["triggerFilter"] == [] and sub["active"] is True
    for path in (f"{URL}/{sub['id']}", URL):
        status, _, shown = await call(session, "GET", f"{stack.base_url}{path}", key)
        assert status == 200 and secret not in json.dumps(shown)
    own = "my-own-signing-secret-123456"
    status, body = await create(
        session,
        stack,
        key,
        webhook(webhookConfig={"url": "https://x.example.com/h", "secret": own}),
    )
    assert (
        status == 201 and "signingSecret" not in body["data"]
    )  # a secret the client chose is not echoed
    db = sqlite3.connect(stack.data_dir / "controlplane.db")
    try:
        dump = "\n".join(db.iterdump())
    finally:
        db.close()
    assert secret not in dump and own not in dump  # sealed at rest


async def test_validation_errors_name_their_fields(session, stack: Stack) -> None:
    _, key = await new_project(session, stack)
    cases = [
        (webhook(workflowIds=["wf-1"]), "workflowIds"),
        (
            {"notificationType": "webhook", "webhookConfig": {"url": "https://a.example.com/x"}},
            "workflowIds",
        ),
        ({"notificationType": "webhook", "allWorkflows": True}, "webhookConfig"),
        ({"notificationType": "email", "allWorkflows": True}, "emailRecipients"),
        (
            {
                "notificationType": "email",
                "allWorkflows": True,
                "emailRecipients": ["not-an-address"],
            },
            "emailRecipients[0]",
        ),
        (
            {
                "notificationType": "email",
                "allWorkflows": True,
                "emailRecipients": [f"u{i}@example.com" for i in range(11)],
            },
            "emailRecipients",
        ),
        (webhook(workflowIds=[], allWorkflows=False), "workflowIds"),
        (webhook(allWorkflows=False, workflowIds=["never-seen"]), "workflowIds[0]"),
        (
            webhook(alertConfig={"rule": "consecutive_failures", "consecutiveFailures": 0}),
            "alertConfig.consecutiveFailures",
        ),
        (
            webhook(alertConfig={"rule": "failure_rate", "windowHours": 200}),
            "alertConfig.windowHours",
        ),
        (webhook(alertConfig={"rule": "nope"}), "alertConfig.rule"),
        (webhook(webhookConfig={"url": "http://10.0.0.1/hook"}), "webhookConfig.url"),
        (webhook(webhookConfig={"url": "http://169.254.169.254/latest"}), "webhookConfig.url"),
        (webhook(webhookConfig={"url": "ftp://example.com/x"}), "webhookConfig.url"),
        (webhook(colour="red"), "colour"),
    ]
    for body, field in cases:
        status, err = await create(session, stack, key, body)
        assert status == 400, (body, err)
        assert field in [d["field"] for d in err["error"]["details"]], (field, err)


async def test_workflow_ids_must_exist_in_the_project(session, stack: Stack) -> None:
    _, key = await new_project(session, stack)
    assert (await post_events(session, stack, key, [completed("e1", "wf-known")]))[0] == 202
    await read_all(session, stack, key, 1)
    for _ in range(50):
        status, body = await create(
            session, stack, key, webhook(allWorkflows=False, workflowIds=["wf-known"])
        )
        if status == 201:
            break
        await asyncio.sleep(0.2)
    assert status == 201 and body["data"]["subscription"]["workflowIds"] == ["wf-known"]
    _, stranger = await new_project(session, stack)
    status, err = await create(
        session, stack, stranger, webhook(allWorkflows=False, workflowIds=["wf-known"])
    )
    assert status == 400 and err["error"]["details"][0]["field"] == "workflowIds[0]"


async def test_at_most_ten_per_type(session, stack: Stack) -> None:
    _, key = await new_project(session, stack)
    for i in range(10):
        assert (
            await create(
                session, stack, key, webhook(webhookConfig={"url": f"https://h{i}.example.com/x"})
            )
        )[0] == 201
    status, err = await create(session, stack, key, webhook())
    assert status == 409 and err["error"]["code"] == "CONFLICT"
    email = {
        "notificationType": "email",
        "allWorkflows": True,
        "emailRecipients": ["sre@example.com"],
    }
    assert (await create(session, stack, key, email))[0] == 201  # other types count apart


async def test_patch_delete_and_foreign_ids(session, stack: Stack) -> None:
    _, key = await new_project(session, stack)
    _, body = await create(session, stack, key, webhook())
    sid = body["data"]["subscription"]["id"]
    base = f"{stack.base_url}{URL}/{sid}"
    status, _, patched = await call(
        session,
        "PATCH",
        base,
        key,
        json={
            "active": False,
            "triggerFilter": ["api"],
            "alertConfig": {"rule": "error_count", "errorCountThreshold": 5},
        },
    )
    assert status == 200
    assert patched["data"]["active"] is False and patched["data"]["triggerFilter"] == ["api"]
    assert patched["data"]["alertConfig"] == {"rule": "error_count", "errorCountThreshold": 5}
    status, _, err = await call(
        session, "PATCH", base, key, json={"emailRecipients": ["a@example.com"]}
    )
    assert status == 400
    _, stranger = await new_project(session, stack)
    for method in ("GET", "PATCH", "DELETE"):
        status, _, _ = await call(
            session, method, base, stranger, json={} if method == "PATCH" else None
        )
        assert status == 404, method
    reader = await new_key(session, stack, key, ["notifications:read"])
    status, _, err = await call(session, "DELETE", base, reader["secret"])
    assert status == 403 and "'notifications:write'" in err["error"]["message"]
    status, _, gone = await call(session, "DELETE", base, key)
    assert status == 200 and gone["data"] == {"id": sid, "deleted": True}
    assert (await call(session, "GET", base, key))[0] == 404


async def test_changes_reach_the_compacted_topic_through_the_outbox(session, stack: Stack) -> None:
    _, key = await new_project(session, stack)
    _, body = await create(
        session,
        stack,
        key,
        webhook(alertConfig={"rule": "cost_threshold", "costThresholdDollars": 0.5}),
    )
    sid, secret = body["data"]["subscription"]["id"], body["data"]["signingSecret"]
    status, _, rotated = await call(
        session, "POST", f"{stack.base_url}{URL}/{sid}/rotate-secret", key
    )
    assert status == 200 and rotated["data"]["signingSecret"] not in (None, secret)
    await call(session, "DELETE", f"{stack.base_url}{URL}/{sid}", key)
    for _ in range(50):
        records = [
            r
            for r in await consume_all(stack.kafka_bootstrap, "subscriptions", 2000)
            if r.key.decode().startswith(f"{sid}/")
        ]
        if any(r.value is None for r in records):
            break
        await asyncio.sleep(0.2)
    values = [json.loads(r.value) for r in records if r.value is not None]
    partitions = {r.partition for r in records}
    assert len(partitions) > 1 and all(r.key.decode() == f"{sid}/{r.partition}" for r in records)
    versions = sorted({v["version"] for v in values})
    assert versions == [1, 2, 3] and values[-1]["deleted"] is True
    assert values[0]["alertConfig"] == {"rule": "cost_threshold", "costThresholdDollars": 0.5}
    assert all(
        secret not in r.value.decode() for r in records if r.value
    )  # sealed on the topic too
    assert any("previousSecretCiphertext" in v["destination"] for v in values if v["version"] == 2)


async def test_test_send_queues_a_sample_notification(session, stack: Stack) -> None:
    _, key = await new_project(session, stack)
    _, body = await create(session, stack, key, webhook())
    sid = body["data"]["subscription"]["id"]
    status, _, sent = await call(session, "POST", f"{stack.base_url}{URL}/{sid}/test", key)
    assert status == 202 and sent["data"]["deliveryId"].startswith("dlv_")
    records = [
        json.loads(r.value) for r in await consume_all(stack.kafka_bootstrap, "notifications")
    ]
    mine = [r for r in records if r["deliveryId"] == sent["data"]["deliveryId"]]
    assert len(mine) == 1 and mine[0]["subscriptionId"] == sid
    assert (
        mine[0]["payload"]["id"] == sent["data"]["eventId"] and mine[0]["payload"]["test"] is True
    )


async def test_the_whole_stack_notifies_a_subscription_of_a_completed_execution(
    session, stack: Stack
) -> None:
    _, key = await new_project(session, stack)
    status, body = await create(session, stack, key, webhook(levelFilter=["error"]))
    assert status == 201
    sid = body["data"]["subscription"]["id"]
    await asyncio.sleep(1.0)  # the outbox relay publishes the subscription to the alert engine
    events = [completed("ok-1", "wf-n"), completed("boom-1", "wf-n", level="error")]
    assert (await post_events(session, stack, key, events))[0] == 202
    mine: list[dict[str, Any]] = []
    for _ in range(60):
        records = [
            json.loads(r.value)
            for r in await consume_all(stack.kafka_bootstrap, "notifications", 1000)
        ]
        mine = [r for r in records if r["subscriptionId"] == sid]
        if mine:
            break
        await asyncio.sleep(0.5)
    assert [r["payload"]["data"]["executionId"] for r in mine] == ["boom-1"]  # level filter applied
    payload = mine[0]["payload"]
    assert payload["type"] == "workflow.execution.completed" and payload["id"].startswith("evt_")
    assert payload["links"]["execution"] == "/v1/logs/executions/boom-1"
    assert mine[0]["deliveryId"].startswith("dlv_")
