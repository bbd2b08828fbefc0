"""PagerDuty, Teams and Discord subscriptions over HTTP (bounds, secrets sealed and masked) and
their deliveries through the whole stack to real receivers, a Discord 429 included."""

import json
import sqlite3
import time
from typing import Any

import aiohttp

from tests.e2e.helpers import call, eventually, new_project
from tests.processes import Stack
from tests.receivers import DiscordReceiver, TeamsReceiver

URL = "/api/v1/notifications"
ROUTING_KEY = "R0123456789abcdef0123456789ABCDE"
ALERT_CONFIG = {"rule": "consecutive_failures", "consecutiveFailures": 2, "notifyOnResolve": True}


async def create(
    session: aiohttp.ClientSession, stack: Stack, key: str, kind: str, **fields: Any
) -> tuple[int, Any]:
    body = {"notificationType": kind, "allWorkflows": True, **fields}
    status, _, data = await call(session, "POST", f"{stack.base_url}{URL}", key, json=body)
    return status, data


def fields_of(answer: Any) -> set[str]:
    return {d["field"] for d in answer["error"]["details"]}


async def test_bodies_are_bounded_and_pagerduty_needs_a_rule(
    session: aiohttp.ClientSession, stack: Stack
) -> None:
    _, key = await new_project(session, stack)
    cases = [
        ("pagerduty", {"pagerdutyConfig": {"routingKey": ROUTING_KEY}}, "alertConfig"),
        ("pagerduty", {"alertConfig": ALERT_CONFIG}, "pagerdutyConfig"),
        ("pagerduty", {"pagerdutyConfig": {"routingKey": "short"}, "alertConfig": ALERT_CONFIG},
         "pagerdutyConfig.routingKey"),
        ("pagerduty", {"pagerdutyConfig": {"routingKey": "é" * 32}, "alertConfig": ALERT_CONFIG},
         "pagerdutyConfig.routingKey"),
        ("teams", {}, "teamsConfig"),
        ("teams", {"teamsConfig": {"webhookUrl": "https://x.example.com/" + "a" * 2048}},
         "teamsConfig.webhookUrl"),
        ("teams", {"teamsConfig": {"webhookUrl": "http://10.1.2.3/hook"}},
         "teamsConfig.webhookUrl"),
        ("discord", {}, "discordConfig"),
        ("discord", {"discordConfig": {"webhookUrl": "https://d.example.com/x", "extra": 1}},
         "discordConfig.extra"),
        ("discord", {"discordConfig": {"webhookUrl": "http://169.254.169.254/latest"}},
         "discordConfig.webhookUrl"),
    ]  # fmt: skip
    for kind, fields, field in cases:
        status, answer = await create(session, stack, key, kind, **fields)
        assert status == 400, (kind, fields, answer)
        assert field in fields_of(answer) or answer["error"].get("field") == field, answer


async def test_secrets_are_sealed_masked_and_kind_bound(
    session: aiohttp.ClientSession, stack: Stack
) -> None:
    _, key = await new_project(session, stack)
    teams_url = "https://acme.webhook.office.com/webhookb2/TeamsSecretPart0123"
    discord_url = "https://discord.com/api/webhooks/123/DiscordSecretPart0123"
    made = {
        "pagerduty": await create(session, stack, key, "pagerduty", alertConfig=ALERT_CONFIG,
                                  pagerdutyConfig={"routingKey": ROUTING_KEY}),
        "teams": await create(session, stack, key, "teams", teamsConfig={"webhookUrl": teams_url}),
        "discord": await create(session, stack, key, "discord",
                                discordConfig={"webhookUrl": discord_url}),
    }  # fmt: skip
    assert {k: status for k, (status, _) in made.items()} == dict.fromkeys(made, 201)
    views = {k: body["data"]["subscription"] for k, (_, body) in made.items()}
    assert views["pagerduty"]["pagerdutyConfig"] == {"routingKeySet": True}
    assert views["teams"]["teamsConfig"] == {"webhookUrlSet": True}
    assert views["discord"]["discordConfig"] == {"webhookUrlSet": True}
    assert all("signingSecret" not in body["data"] for _, body in made.values())
    status, _, listed = await call(session, "GET", f"{stack.base_url}{URL}", key)
    shown = json.dumps(listed) + json.dumps([body for _, body in made.values()])
    for secret in (ROUTING_KEY, "TeamsSecretPart", "DiscordSecretPart"):
        assert secret not in shown
    db = sqlite3.connect(stack.data_dir / "controlplane.db")
    try:
        dump = "\n".join(db.iterdump())
    finally:
        db.close()
    for secret in (ROUTING_KEY, "TeamsSecretPart", "DiscordSecretPart"):
        assert secret not in dump  # sealed at rest

    discord_id, pagerduty_id = views["discord"]["id"], views["pagerduty"]["id"]
    patch = {"teamsConfig": {"webhookUrl": teams_url}}
    status, _, answer = await call(
        session, "PATCH", f"{stack.base_url}{URL}/{discord_id}", key, json=patch
    )
    assert status == 400 and answer["error"]["details"][0]["field"] == "notificationType"
    status, _, answer = await call(
        session, "PATCH", f"{stack.base_url}{URL}/{pagerduty_id}", key, json={"alertConfig": None}
    )
    assert status == 400 and "alertConfig" in fields_of(answer)
    renewed = {"discordConfig": {"webhookUrl": discord_url + "Renewed"}}
    status, _, answer = await call(
        session, "PATCH", f"{stack.base_url}{URL}/{discord_id}", key, json=renewed
    )
    assert status == 200 and answer["data"]["discordConfig"] == {"webhookUrlSet": True}
    assert "Renewed" not in json.dumps(answer)


async def queue_test(session: aiohttp.ClientSession, stack: Stack, key: str, sub: str) -> str:
    status, _, body = await call(session, "POST", f"{stack.base_url}{URL}/{sub}/test", key)
    assert status == 202, body
    return str(body["data"]["deliveryId"])


async def attempts_of(
    session: aiohttp.ClientSession, stack: Stack, key: str, sub: str, delivery: str, n: int
) -> list[Any] | None:
    status, _, body = await call(session, "GET", f"{stack.base_url}{URL}/{sub}/deliveries", key)
    assert status == 200, body
    found = [d for d in body["data"] if d["id"] == delivery]
    attempts = found[0]["attempts"] if found else []
    return attempts if len(attempts) >= n and found[0]["status"] != "retrying" else None


async def test_discord_test_send_honours_retry_after_then_is_delivered_and_logged(
    session: aiohttp.ClientSession, stack: Stack
) -> None:
    _, key = await new_project(session, stack)
    async with DiscordReceiver([DiscordReceiver.rate_limited(6.5)]) as receiver:
        status, body = await create(
            session, stack, key, "discord", discordConfig={"webhookUrl": receiver.url}
        )
        assert status == 201, body
        sub = body["data"]["subscription"]["id"]
        delivery = await queue_test(session, stack, key, sub)
        started = time.monotonic()

        async def two() -> bool:
            return len(receiver.requests) >= 2

        await eventually(two, timeout_s=60)
        # the body's retry_after (6.5 s) wins over the schedule's first delay (5 s + 10%)
        waited = time.monotonic() - started
        assert waited >= 6.0, waited
        assert [r.problems for r in receiver.requests] == [[], []]
        message = receiver.requests[1].json()
        assert message["allowed_mentions"] == {"parse": []}
        assert message["embeds"][0]["title"] == "Workflow Completed: CodeCourier test notification"
        attempts = await eventually(lambda: attempts_of(session, stack, key, sub, delivery, 2))
    assert [(a["attempt"], a["outcome"], a["responseCode"]) for a in attempts] == [
        (1, "retrying", 429),
        (2, "delivered", 204),
    ]
    assert all("DiscordSecretToken" not in json.dumps(a) for a in attempts)


async def test_teams_test_send_is_an_adaptive_card(
    session: aiohttp.ClientSession, stack: Stack
) -> None:
    _, key = await new_project(session, stack)
    async with TeamsReceiver() as receiver:
        status, body = await create(
            session, stack, key, "teams", teamsConfig={"webhookUrl": receiver.url}
        )
        assert status == 201, body
        sub = body["data"]["subscription"]["id"]
        delivery = await queue_test(session, stack, key, sub)

        async def one() -> bool:
            return len(receiver.requests) >= 1

        await eventually(one)
        [request] = receiver.requests
        assert request.problems == []
        card = request.json()["attachments"][0]["content"]
        assert card["actions"][0]["url"].endswith("/api/v1/logs/test")
        attempts = await eventually(lambda: attempts_of(session, stack, key, sub, delivery, 1))
    assert [(a["outcome"], a["responseCode"]) for a in attempts] == [("delivered", 200)]
