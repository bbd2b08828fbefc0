"""Endpoint health, auto-disable and recover over HTTP in this process, on chDB and a real control
plane, with delivery attempts inserted as the log sink writes them and a fixed clock."""

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiohttp.test_utils import TestClient

from schemas import topics
from schemas.notifications import NotificationRecord, SubscriptionRecord
from services.api.autodisable import disable_failing, send_owner_notices
from services.api.deps import Deps
from services.api.samples import sample_notification
from services.common.clickhouse import ClickHouse
from services.common.clock import iso_ms
from services.common.controlplane import ControlPlane
from services.common.errors import Unavailable
from services.common.processes import free_port
from services.logsink.rows import ATTEMPT_COLUMNS
from tests.integration.apiserver import ADMIN_TOKEN, admin_project, deps_for, serving, settings_for
from tests.integration.conftest import control_plane_engine
from tests.integration.console import person
from tests.receivers import SmtpReceiver

pytestmark = pytest.mark.filterwarnings("ignore::aiohttp.web_exceptions.NotAppKeyWarning")

NOW_MS = int(time.time() * 1000) // 1000 * 1000
MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


class RecordingProducer:
    """A producer that acknowledges every record at once and keeps them."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None]] = []

    async def partitions_for(self, _topic: str) -> set[int]:
        return {0, 1}

    async def send(self, topic: str, value: bytes | None, **_kw: Any) -> "asyncio.Future[Any]":
        self.sent.append((topic, value))
        if topic != topics.NOTIFICATIONS:  # the outbox relay leaves its messages pending
            raise Unavailable("no broker here")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


@dataclass
class Api:
    """The API in this process, its chDB, control plane and adapters."""

    client: TestClient[Any, Any]
    ch: ClickHouse
    cp: ControlPlane
    deps: Deps
    producer: RecordingProducer
    project: str = ""
    headers: dict[str, str] = field(default_factory=dict)


@pytest.fixture
async def api(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Api]:
    plane = ControlPlane(control_plane_engine(request, "sqlite", tmp_path))
    await plane.migrate(1)
    ch = ClickHouse(f"chdb://{tmp_path / 'ch'}")
    await ch.migrate()
    overrides = getattr(request, "param", {})
    deps = deps_for(settings_for(tmp_path, auto_disable_hours=2.0, **overrides), plane)
    producer = RecordingProducer()
    deps.clickhouse, deps.clock, deps.producer = ch, lambda: NOW_MS / 1000, producer  # type: ignore[assignment]
    try:
        async with serving(deps) as client:
            made = Api(client, ch, plane, deps, producer)
            made.project, made.headers = await admin_project(client)
            yield made
    finally:
        ch.close()
        await plane.close()


async def _subscription(api: Api) -> str:
    body = {
        "notificationType": "webhook",
        "allWorkflows": True,
        "webhookConfig": {"url": "https://hooks.example.com/codecourier"},
    }
    response = await api.client.post("/api/v1/notifications", json=body, headers=api.headers)
    assert response.status == 201, await response.text()
    return str((await response.json())["data"]["subscription"]["id"])


_serial = iter(range(10**6))


async def _deliveries(
    api: Api, subscription: str, outcomes: list[tuple[str, int]], rounds: int = 1
) -> list[str]:
    """One delivery per (final outcome, end ms): a retrying attempt a minute before its end, the
    first carrying the payload; returns the delivery ids."""
    rows, ids = [], []
    stored = await api.cp.get_subscription(api.project, subscription)
    assert stored is not None
    payload = msgspec.json.encode(sample_notification(stored, NOW_MS).payload).decode()
    for outcome, ended_ms in outcomes:
        delivery = f"dlv_{next(_serial)}"
        ids.append(delivery)
        for attempt, (kind, at) in enumerate(
            [("retrying", ended_ms - MINUTE_MS), (outcome, ended_ms)], start=1
        ):
            rows.append((
                api.project, subscription, delivery, f"evt_{delivery}",
                "workflow.execution.completed", "webhook", 0, attempt, kind, iso_ms(at), 5,
                "hooks.example.com", 503 if kind != "delivered" else 200, "", None, None,
                payload if attempt == 1 else "",
            ))  # fmt: skip
    await api.ch.insert("delivery_attempts", rows, ATTEMPT_COLUMNS)
    return ids


async def _health(api: Api, subscription: str) -> dict[str, Any]:
    one = await api.client.get(f"/api/v1/notifications/{subscription}", headers=api.headers)
    body = await one.json()
    assert one.status == 200, body
    listed = await (await api.client.get("/api/v1/notifications", headers=api.headers)).json()
    in_list = next(s for s in listed["data"] if s["id"] == subscription)
    assert in_list["health"] == body["data"]["health"]
    return dict(body["data"]["health"])


# ---- health ------------------------------------------------------------------------------------


async def test_health_of_healthy_failing_and_quiet_subscriptions(api: Api) -> None:
    quiet, healthy, failing = [await _subscription(api) for _ in range(3)]
    assert await _health(api, quiet) == {"status": "healthy"}
    await _deliveries(api, healthy, [
        ("failed", NOW_MS - 30 * HOUR_MS), ("delivered", NOW_MS - 2 * HOUR_MS),
        ("failed", NOW_MS - HOUR_MS), ("delivered", NOW_MS - MINUTE_MS),
    ])  # fmt: skip
    assert await _health(api, healthy) == {
        "status": "healthy", "lastSuccessAt": iso_ms(NOW_MS - MINUTE_MS),
        "lastFailureAt": iso_ms(NOW_MS - HOUR_MS), "successRate24h": round(2 / 3, 4),
    }  # fmt: skip
    await _deliveries(api, failing, [
        ("delivered", NOW_MS - 30 * HOUR_MS), ("failed", NOW_MS - 25 * HOUR_MS),
        ("failed", NOW_MS - 3 * HOUR_MS), ("failed", NOW_MS - HOUR_MS),
    ])  # fmt: skip
    # and one still retrying: it has not ended, so it does not count
    await api.ch.insert("delivery_attempts", [(
        api.project, failing, "dlv_retrying", "evt_r", "workflow.execution.completed", "webhook",
        0, 1, "retrying", iso_ms(NOW_MS - MINUTE_MS), 5, "h", 503, "", None, None, "",
    )], ATTEMPT_COLUMNS)  # fmt: skip
    assert await _health(api, failing) == {
        "status": "failing", "failingSince": iso_ms(NOW_MS - 25 * HOUR_MS),
        "lastSuccessAt": iso_ms(NOW_MS - 30 * HOUR_MS),
        "lastFailureAt": iso_ms(NOW_MS - HOUR_MS), "successRate24h": 0.0,
    }  # fmt: skip


async def test_a_redelivered_delivery_counts_by_its_latest_round(api: Api) -> None:
    subscription = await _subscription(api)
    (delivery,) = await _deliveries(api, subscription, [("failed", NOW_MS - HOUR_MS)])
    assert (await _health(api, subscription))["status"] == "failing"
    await api.ch.insert("delivery_attempts", [(
        api.project, subscription, delivery, f"evt_{delivery}", "workflow.execution.completed",
        "webhook", NOW_MS - MINUTE_MS, 1, "delivered", iso_ms(NOW_MS - MINUTE_MS), 5, "h", 200,
        "", None, None, "",
    )], ATTEMPT_COLUMNS)  # fmt: skip
    health = await _health(api, subscription)
    assert health["status"] == "healthy" and health["successRate24h"] == 1.0


# ---- auto-disable ------------------------------------------------------------------------------


async def test_auto_disable_once_with_one_email_to_the_owners(api: Api) -> None:
    await person(api.cp, "owner@example.com", {api.project: "owner"})
    await person(api.cp, "member@example.com", {api.project: "member"})
    subscription = await _subscription(api)
    await _deliveries(api, subscription, [
        ("delivered", NOW_MS - 5 * HOUR_MS),
        *(("failed", NOW_MS - 3 * HOUR_MS + i * MINUTE_MS) for i in range(10)),
    ])  # fmt: skip
    async with SmtpReceiver() as smtp:
        api.deps.settings = msgspec.structs.replace(api.deps.settings, smtp_url=smtp.url)
        disabled = await disable_failing(api.deps)
        assert [row.id for row in disabled] == [subscription]
        assert await disable_failing(api.deps) == []  # a second pass, or a restart: nothing more
        assert len(smtp.mails) == 1
        mail = smtp.mails[0]
        assert mail.recipients == ["owner@example.com"]
        assert subscription in str(mail.message["Subject"])
        assert "10 deliveries all failed" in mail.message.get_body().get_content()  # type: ignore[union-attr]
    one = await (await api.client.get(f"/api/v1/notifications/{subscription}", headers=api.headers)).json()  # fmt: skip
    view = one["data"]
    assert view["active"] is False and view["health"]["status"] == "disabled"
    assert "last 10 deliveries all failed" in view["disabledReason"]
    records = [
        msgspec.json.decode(m.value, type=SubscriptionRecord)
        for m in await api.cp.pending_outbox(100) if m.value
    ]  # fmt: skip
    latest = [r for r in records if r.id == subscription and r.version == max(
        x.version for x in records if x.id == subscription)]  # fmt: skip
    assert latest and all(r.active is False for r in latest)


async def test_two_replicas_disable_once_and_send_one_email(api: Api) -> None:
    await person(api.cp, "owner@example.com", {api.project: "owner"})
    subscription = await _subscription(api)
    await _deliveries(api, subscription, [("failed", NOW_MS - 3 * HOUR_MS + i) for i in range(12)])
    async with SmtpReceiver() as smtp:
        api.deps.settings = msgspec.structs.replace(api.deps.settings, smtp_url=smtp.url)
        first, second = await asyncio.gather(disable_failing(api.deps), disable_failing(api.deps))
        assert len(first) + len(second) == 1
        assert len(smtp.mails) == 1


async def test_an_email_the_smtp_server_refused_is_sent_on_a_later_pass(api: Api) -> None:
    await person(api.cp, "owner@example.com", {api.project: "owner"})
    subscription = await _subscription(api)
    await _deliveries(api, subscription, [("failed", NOW_MS - 3 * HOUR_MS + i) for i in range(12)])
    down = f"smtp://127.0.0.1:{free_port()}"  # nothing listens there
    api.deps.settings = msgspec.structs.replace(api.deps.settings, smtp_url=down)
    assert [row.id for row in await disable_failing(api.deps)] == [subscription]
    async with SmtpReceiver() as smtp:
        api.deps.settings = msgspec.structs.replace(api.deps.settings, smtp_url=smtp.url)
        api.deps.clock = lambda: (NOW_MS + 30_000) / 1000
        assert await send_owner_notices(api.deps) == 0  # retried a minute after the failure
        api.deps.clock = lambda: (NOW_MS + 61_000) / 1000
        assert await send_owner_notices(api.deps) == 1
        assert await disable_failing(api.deps) == [] and await send_owner_notices(api.deps) == 0
        assert [mail.recipients for mail in smtp.mails] == [["owner@example.com"]]
        assert subscription in str(smtp.mails[0].message["Subject"])


async def test_a_subscription_set_active_again_is_owed_no_email(api: Api) -> None:
    await person(api.cp, "owner@example.com", {api.project: "owner"})
    subscription = await _subscription(api)
    await _deliveries(api, subscription, [("failed", NOW_MS - 3 * HOUR_MS + i) for i in range(12)])
    api.deps.settings = msgspec.structs.replace(
        api.deps.settings, smtp_url=f"smtp://127.0.0.1:{free_port()}"
    )
    await disable_failing(api.deps)
    url = f"/api/v1/notifications/{subscription}"
    response = await api.client.patch(url, json={"active": True}, headers=api.headers)
    assert response.status == 200, await response.text()
    async with SmtpReceiver() as smtp:
        api.deps.settings = msgspec.structs.replace(api.deps.settings, smtp_url=smtp.url)
        api.deps.clock = lambda: (NOW_MS + 2 * HOUR_MS) / 1000
        assert await send_owner_notices(api.deps) == 0
        assert smtp.mails == [] and await api.cp.owner_notices_due(NOW_MS + 2 * HOUR_MS, 10) == []


async def test_not_disabled_with_nine_failures_or_a_success_inside_the_span(api: Api) -> None:
    nine, recent_success, young = [await _subscription(api) for _ in range(3)]
    await _deliveries(api, nine, [("failed", NOW_MS - 3 * HOUR_MS + i) for i in range(9)])
    await _deliveries(api, recent_success, [
        *(("failed", NOW_MS - 5 * HOUR_MS + i) for i in range(10)),
        ("delivered", NOW_MS - HOUR_MS), *(("failed", NOW_MS - 50 * MINUTE_MS + i) for i in range(10)),
    ])  # fmt: skip
    await _deliveries(api, young, [("failed", NOW_MS - HOUR_MS + i) for i in range(20)])
    assert await disable_failing(api.deps) == []
    for subscription in (nine, recent_success, young):
        assert (await _health(api, subscription))["status"] == "failing"


# ---- recover -----------------------------------------------------------------------------------


async def test_recover_queues_the_failed_deliveries_of_the_range_again(api: Api) -> None:
    subscription = await _subscription(api)
    old = await _deliveries(api, subscription, [("failed", NOW_MS - 48 * HOUR_MS)])
    failed = await _deliveries(
        api, subscription, [("failed", NOW_MS - 2 * HOUR_MS), ("failed", NOW_MS - HOUR_MS)]
    )
    await _deliveries(api, subscription, [("delivered", NOW_MS - HOUR_MS)])
    api.producer.sent.clear()
    url = f"/api/v1/notifications/{subscription}/recover"
    since = iso_ms(NOW_MS - 24 * HOUR_MS)
    response = await api.client.post(url, json={"since": since}, headers=api.headers)
    assert response.status == 202, await response.text()
    assert await response.json() == {"data": {"deliveries": 2}}
    sent = [
        msgspec.json.decode(v or b"", type=NotificationRecord)
        for t, v in api.producer.sent if t == topics.NOTIFICATIONS
    ]  # fmt: skip
    assert sorted(n.deliveryId for n in sent) == sorted(failed)
    assert all(n.round >= NOW_MS and n.eventId == f"evt_{n.deliveryId}" for n in sent)
    assert old[0] not in {n.deliveryId for n in sent}


async def test_recover_refuses_bad_ranges_and_foreign_ids(api: Api) -> None:
    subscription = await _subscription(api)
    url = f"/api/v1/notifications/{subscription}/recover"
    cases = [
        {"since": iso_ms(NOW_MS), "until": iso_ms(NOW_MS - HOUR_MS)},
        {"since": iso_ms(NOW_MS - 31 * 24 * HOUR_MS)},
        {"since": "yesterday"},
    ]
    for body in cases:
        response = await api.client.post(url, json=body, headers=api.headers)
        assert response.status == 400, (body, await response.text())
    other = await api.client.post(
        "/admin/v1/projects", json={"name": "q", "plan": "free"}, headers=ADMIN
    )
    key = (await other.json())["data"]["key"]["secret"]
    response = await api.client.post(
        url, json={"since": iso_ms(NOW_MS - HOUR_MS)}, headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status == 404
