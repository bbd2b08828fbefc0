"""Alerts as a resource, in this process on chDB and a real control plane: the log sink's code
turns `alert-events` and `alert-acks` records into `alerts` and `alert_acks` rows, and
`/api/v1/alerts` lists (filters, cursors), reads and acknowledges them; foreign ids are 404."""

import asyncio
import random
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import msgspec
import pytest
from aiokafka.structs import TopicPartition

from schemas import topics
from schemas.alerts import AckRecord, AlertEvent
from services.common.clickhouse import ClickHouse
from services.common.clock import iso_ms
from services.common.controlplane import ControlPlane
from services.common.kafkaclients import KafkaClients
from services.logsink.sink import LogSink, SinkConfig
from tests.integration.apiserver import admin_project, deps_for, serving, settings_for
from tests.integration.conftest import control_plane_engine
from tests.integration.test_endpoint_health import Api, RecordingProducer
from tests.unit.test_poison import Producer, consumer_record

pytestmark = pytest.mark.filterwarnings("ignore::aiohttp.web_exceptions.NotAppKeyWarning")

T0 = (int(time.time()) // 60 - 60) * 60_000  # within the tables' retention
MINUTE = 60_000
_encode = msgspec.json.Encoder(decimal_format="number").encode


class Clock:
    def __init__(self) -> None:
        self.ms = T0 + 30 * MINUTE

    def __call__(self) -> float:
        return self.ms / 1000


class Broker(RecordingProducer):
    """A producer that takes every record, each at the next offset of its partition."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[tuple[str, int | None, bytes | None, int]] = []
        self._next: dict[tuple[str, int | None], int] = defaultdict(int)

    async def send(self, topic: str, value: bytes | None, **kw: Any) -> "asyncio.Future[Any]":
        self.sent.append((topic, value))
        partition = kw.get("partition")
        offset = self._next[topic, partition]
        self._next[topic, partition] += 1
        self.log.append((topic, partition, value, offset))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_result(SimpleNamespace(offset=offset))
        return future


@pytest.fixture
async def api(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Api]:
    plane = ControlPlane(control_plane_engine(request, "sqlite", tmp_path))
    await plane.migrate(1)
    ch = ClickHouse(f"chdb://{tmp_path / 'ch'}")
    await ch.migrate()
    deps = deps_for(settings_for(tmp_path), plane)
    producer = Broker()
    deps.clickhouse, deps.clock, deps.producer = ch, Clock(), producer  # type: ignore[assignment]
    try:
        async with serving(deps) as client:
            made = Api(client, ch, plane, deps, producer)
            made.project, made.headers = await _project(made)
            yield made
    finally:
        ch.close()
        await plane.close()


async def _project(api: Api) -> tuple[str, dict[str, str]]:
    return await admin_project(api.client, "pro")


def event(project: str, alert: str, version: int, **fields: Any) -> AlertEvent:
    base: dict[str, Any] = {
        "v": 1, "alertId": alert, "projectId": project, "subscriptionId": "ntf_s1",
        "workflowId": "wf1", "rule": "consecutive_failures", "kind": "fired", "silenced": False,
        "notified": True, "reason": "3 consecutive failures", "observed": 3, "threshold": 3,
        "atMs": T0, "firedAtMs": T0, "notificationCount": version, "version": version,
        "executionId": "ex-1", "lastNotifiedAtMs": T0,
    }  # fmt: skip
    return msgspec.convert(base | fields, AlertEvent)


async def sink(api: Api, records: list[tuple[str, bytes]]) -> Producer:
    """Run the log sink's record handling and insert on `records`; its dead letters."""
    logsink = LogSink(SinkConfig(), api.ch, KafkaClients("unused:9092"))
    logsink.producer = cast(Any, Producer())
    for offset, (topic, value) in enumerate(records):
        record = consumer_record(topic, value, offset)
        await logsink._add(TopicPartition(topic, 0), record)
    await logsink._insert(logsink.batch)
    return cast(Producer, logsink.producer)


def scenario(project: str, foreign: str) -> list[tuple[str, bytes]]:
    """Three alerts of the project (one resolved, one silenced) and one of another, each event
    replayed once, in an order where a later version may come first."""
    events = [
        event(project, "alr_one", 1),
        event(project, "alr_one", 2, atMs=T0 + 10 * MINUTE, lastNotifiedAtMs=T0 + 10 * MINUTE,
              reason="5 consecutive failures", observed=5),
        event(project, "alr_one", 3, kind="resolved", atMs=T0 + 20 * MINUTE,
              reason="Resolved: 0 consecutive failures", observed=0,
              lastNotifiedAtMs=T0 + 20 * MINUTE),
        event(project, "alr_two", 1, workflowId="wf2", silenced=True, notified=False,
              atMs=T0 + 5 * MINUTE, firedAtMs=T0 + 5 * MINUTE, notificationCount=0,
              lastNotifiedAtMs=None),
        event(project, "alr_three", 1, subscriptionId="ntf_s2", rule="latency_threshold",
              observed=2.5, threshold=1, atMs=T0 + 15 * MINUTE, firedAtMs=T0 + 15 * MINUTE,
              lastNotifiedAtMs=T0 + 15 * MINUTE, executionId=None),
        event(foreign, "alr_foreign", 1),
    ]  # fmt: skip
    records = [(topics.ALERT_EVENTS, _encode(e)) for e in events] * 2
    random.Random(7).shuffle(records)
    return records


async def ids(api: Api, query: str = "", headers: dict[str, str] | None = None) -> list[str]:
    response = await api.client.get(f"/api/v1/alerts{query}", headers=headers or api.headers)
    assert response.status == 200, await response.text()
    return [a["id"] for a in (await response.json())["data"]]


async def test_the_sink_stores_alerts_and_the_api_lists_them(api: Api) -> None:
    foreign, _ = await _project(api)
    dead = await sink(api, [*scenario(api.project, foreign), (topics.ALERT_EVENTS, b"{}")])
    assert [(topic, value) for topic, value, _ in dead.sent] == [(topics.ALERT_EVENTS_DLQ, b"{}")]

    assert await ids(api) == ["alr_three", "alr_two", "alr_one"]  # newest first
    response = await api.client.get("/api/v1/alerts/alr_one", headers=api.headers)
    assert response.status == 200
    assert (await response.json())["data"] == {
        "id": "alr_one", "subscriptionId": "ntf_s1", "workflowId": "wf1",
        "rule": "consecutive_failures", "state": "resolved", "acknowledged": False,
        "silenced": False, "reason": "Resolved: 0 consecutive failures", "observed": 0,
        "threshold": 3, "firedAt": iso_ms(T0), "lastNotifiedAt": iso_ms(T0 + 20 * MINUTE),
        "resolvedAt": iso_ms(T0 + 20 * MINUTE), "notificationCount": 3, "executionId": "ex-1",
        "acknowledgedAt": None, "acknowledgedBy": None,
    }  # fmt: skip
    three = await (await api.client.get("/api/v1/alerts/alr_three", headers=api.headers)).json()
    assert (three["data"]["observed"], three["data"]["state"]) == (2.5, "firing")
    two = await (await api.client.get("/api/v1/alerts/alr_two", headers=api.headers)).json()
    assert (two["data"]["silenced"], two["data"]["lastNotifiedAt"]) == (True, None)

    assert await ids(api, "?state=firing") == ["alr_three", "alr_two"]
    assert await ids(api, "?state=resolved") == ["alr_one"]
    assert await ids(api, "?workflowId=wf1") == ["alr_three", "alr_one"]
    assert await ids(api, "?subscriptionId=ntf_s1") == ["alr_two", "alr_one"]
    assert await ids(api, "?rule=latency_threshold") == ["alr_three"]
    assert await ids(api, "?workflowId=wf1&state=firing") == ["alr_three"]
    for bad in ("?state=open", "?rule=nope", "?limit=0", "?limit=101", "?other=1"):
        response = await api.client.get(f"/api/v1/alerts{bad}", headers=api.headers)
        assert response.status == 400, bad


async def test_cursors_page_newest_first_and_stay_with_their_filter(api: Api) -> None:
    await sink(api, scenario(api.project, "prj_other"))
    seen, cursor = [], ""
    while True:
        response = await api.client.get(f"/api/v1/alerts?limit=1{cursor}", headers=api.headers)
        body = await response.json()
        seen += [a["id"] for a in body["data"]]
        if not body["hasMore"]:
            break
        cursor = f"&cursor={body['nextCursor']}"
    assert seen == ["alr_three", "alr_two", "alr_one"]
    response = await api.client.get("/api/v1/alerts?limit=1", headers=api.headers)
    token = (await response.json())["nextCursor"]
    response = await api.client.get(f"/api/v1/alerts?state=firing&cursor={token}",
                                    headers=api.headers)  # fmt: skip
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "INVALID_CURSOR"


async def test_acknowledge_is_idempotent_published_and_stored(api: Api) -> None:
    foreign, foreign_key = await _project(api)
    await sink(api, scenario(api.project, foreign))
    url = "/api/v1/alerts/alr_three/acknowledge"
    response = await api.client.post(url, headers=api.headers)
    assert response.status == 200, await response.text()
    first = (await response.json())["data"]
    assert first["acknowledged"] is True and first["id"] == "alr_three"
    assert first["acknowledgedBy"].startswith("default (kak_")
    # Answered once published: a marker on each partition of executions, then the compacted
    # records carrying their markers' offsets.
    log = cast(Broker, api.producer).log
    markers = {p: o for t, p, v, o in log if t == topics.EXECUTIONS and v and b'"ack"' in v}
    published = [(p, msgspec.json.decode(v, type=AckRecord))
                 for t, p, v, _ in log if t == topics.ALERT_ACKS and v]  # fmt: skip
    assert sorted(markers) == sorted(p for p, _ in published) == [0, 1]
    assert {p: a.markerOffset for p, a in published} == markers
    clock = cast(Clock, api.deps.clock)
    clock.ms += MINUTE
    sent = len(log)
    again = (await (await api.client.post(url, headers=api.headers)).json())["data"]
    assert again["acknowledgedAt"] == first["acknowledgedAt"] == iso_ms(T0 + 30 * MINUTE)
    assert len(log) == sent  # nothing published again

    assert {(a.alertId, a.projectId, a.acknowledgedAtMs) for _, a in published} == {
        ("alr_three", api.project, T0 + 30 * MINUTE)
    }
    stored = await api.cp.get_ack(api.project, "alr_three")
    assert stored is not None and stored.acknowledged_at_ms == T0 + 30 * MINUTE

    # The topic's records (one per partition) reach the sink; the list shows them.
    value = msgspec.json.encode(published[0][1])
    await sink(api, [(topics.ALERT_ACKS, value), (topics.ALERT_ACKS, value)])
    response = await api.client.get("/api/v1/alerts?state=firing", headers=api.headers)
    listed = {a["id"]: a for a in (await response.json())["data"]}
    assert listed["alr_three"]["acknowledged"] is True
    assert listed["alr_three"]["acknowledgedAt"] == first["acknowledgedAt"]
    assert listed["alr_two"]["acknowledged"] is False

    for path in ("/api/v1/alerts/alr_foreign", "/api/v1/alerts/alr_nope", "/api/v1/alerts/x"):
        assert (await api.client.get(path, headers=api.headers)).status == 404
        response = await api.client.post(f"{path}/acknowledge", headers=api.headers)
        assert response.status == 404
    assert await api.cp.get_ack(foreign, "alr_foreign") is None
    assert await ids(api, headers=foreign_key) == ["alr_foreign"]


async def test_a_read_only_key_reads_but_cannot_acknowledge(api: Api) -> None:
    await sink(api, scenario(api.project, "prj_other"))
    response = await api.client.post(
        "/api/v1/keys", json={"name": "ro", "scopes": ["notifications:read"]}, headers=api.headers
    )
    assert response.status == 201, await response.text()
    ro = {"Authorization": f"Bearer {(await response.json())['data']['secret']}"}
    assert await ids(api, headers=ro) == ["alr_three", "alr_two", "alr_one"]
    response = await api.client.post("/api/v1/alerts/alr_two/acknowledge", headers=ro)
    assert response.status == 403
