"""The alert engine on records, without Kafka: tables in dicts, notifications collected.

These pin down orders faust may interleave the co-partitioned topics in, for a worker that read
the subscriptions ahead when its partitions were assigned (a fresh worker replaying the log).
"""

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgspec

from schemas import topics
from schemas.events import Cost, ExecutionCompleted, ExecutionRecord, topic_key
from schemas.notifications import NotificationRecord, SubscriptionRecord
from services.alerts.engine import Engine, Tables, Views, partition_of
from services.alerts.ticks import Tick, TickGate
from services.common.config import Settings

PARTITIONS = 3
PROJECT = "prj_engine"
T0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)


def subscription(
    version: int = 1, threshold: str = "0.5", rule: dict[str, Any] | None = None
) -> SubscriptionRecord:
    config = rule or {"rule": "cost_threshold", "costThresholdDollars": threshold}
    return msgspec.convert(
        {
            "v": 1, "id": "ntf_cost", "projectId": PROJECT, "version": version,
            "deleted": False, "notificationType": "webhook", "workflowIds": [],
            "allWorkflows": True, "levelFilter": ["info", "error"], "triggerFilter": [],
            "includeFinalOutput": False, "includeTraceSpans": False,
            "includeRateLimits": False, "includeUsageData": False, "active": True,
            "createdAtMs": int(T0.timestamp() * 1000) - 60_000,
            "destination": {"url": "https://hooks.example.com/cc"},
            "alertConfig": config,
        },
        SubscriptionRecord,
    )  # fmt: skip


class World:
    def __init__(self) -> None:
        self.sent: list[NotificationRecord] = []
        self.offsets = dict.fromkeys(range(PARTITIONS), 0)
        settings = Settings(data_dir=Path("unused"), clickhouse_url="", database_url="")
        self.views = Views()
        self.engine = Engine(
            settings, PARTITIONS, Tables({}, {}), self.views, self.send, TickGate(self.start)
        )

    async def send(self, records: Any) -> None:
        self.sent.extend(records)

    async def start(self, partition: int) -> int:
        return 0

    def message(self, topic: str, partition: int, key: bytes, value: bytes) -> SimpleNamespace:
        offset = self.offsets[partition]
        self.offsets[partition] += 1
        return SimpleNamespace(
            topic=topic, partition=partition, offset=offset, key=key, value=value,
            timestamp=time.time(),
        )  # fmt: skip

    def read_ahead(self, record: SubscriptionRecord) -> None:
        for p in range(PARTITIONS):
            self.views.preload(p, f"{record.id}/{p}".encode(), msgspec.json.encode(record))

    async def subscription_on_stream(self, record: SubscriptionRecord) -> None:
        for p in range(PARTITIONS):
            value = msgspec.json.encode(record)
            await self.engine.handle(
                self.message(topics.SUBSCRIPTIONS, p, f"{record.id}/{p}".encode(), value)
            )

    async def tick(self, at: datetime) -> None:
        for p in range(PARTITIONS):
            tick = Tick(v=1, partition=p, atMs=int(at.timestamp() * 1000), executionsEnd=0)
            await self.engine.handle(
                self.message(topics.TICKS, p, b"tick", msgspec.json.encode(tick))
            )

    async def execution(self, execution_id: str, minutes: float, cost: float) -> None:
        ended = T0 + timedelta(minutes=minutes)
        event = ExecutionCompleted(
            executionId=execution_id, workflowId="wf1", trigger="api", level="info",
            startedAt=ended - timedelta(milliseconds=50), endedAt=ended, totalDurationMs=50,
            cost=Cost(total=cost),
        )  # fmt: skip
        record = ExecutionRecord(
            v=2, projectId=PROJECT, receivedAtMs=int(ended.timestamp() * 1000), retentionDays=7,
            events=[msgspec.Raw(msgspec.json.encode(event))], plan="pro",
        )  # fmt: skip
        key = topic_key(PROJECT, "wf1")
        message = self.message(
            topics.EXECUTIONS, partition_of(key, PARTITIONS), key, msgspec.json.encode(record)
        )
        await self.engine.handle(message)

    def alerts(self) -> list[str]:
        return [msgspec.to_builtins(r.payload)["data"]["executionId"] for r in self.sent]

    def alert_ids(self) -> list[str]:
        return [msgspec.to_builtins(r.payload)["data"]["alert"]["id"] for r in self.sent]


async def test_the_read_ahead_subscription_arriving_on_the_stream_keeps_the_cooldown() -> None:
    world = World()
    world.read_ahead(subscription())
    await world.execution("ex-1", 0, 0.75)  # fires
    await world.subscription_on_stream(subscription())  # the same version: no change
    await world.execution("ex-2", 1, 0.75)  # within the hour's cooldown
    assert world.alerts() == ["ex-1"]


async def test_an_older_version_on_the_stream_does_not_undo_the_newer_one_read_ahead() -> None:
    world = World()
    world.read_ahead(subscription(version=2, threshold="1"))
    await world.subscription_on_stream(subscription(version=1, threshold="0.5"))
    await world.execution("ex-1", 0, 0.75)  # 0.75 is over version 1's threshold, not version 2's
    await world.subscription_on_stream(subscription(version=2, threshold="1"))
    await world.execution("ex-2", 1, 1.5)
    assert world.alerts() == ["ex-2"]


async def test_a_changed_rule_on_the_stream_starts_its_watches_afresh() -> None:
    world = World()
    world.read_ahead(subscription())
    await world.subscription_on_stream(subscription())
    await world.execution("ex-1", 0, 0.75)
    await world.subscription_on_stream(subscription(version=2, threshold="0.6"))
    await world.execution("ex-2", 1, 0.75)  # a new rule: no cooldown carried over
    assert world.alerts() == ["ex-1", "ex-2"]


async def test_no_activity_is_armed_at_creation_whichever_record_comes_first() -> None:
    # The subscription was created a minute before T0; an execution that ended 5 minutes before
    # T0 arrives after it. Arming is at creation in both orders, so the alert is the same.
    idle = subscription(rule={"rule": "no_activity", "inactivityHours": 0.5})
    ids = []
    for read_ahead in (False, True):
        world = World()
        if read_ahead:
            world.read_ahead(idle)
        else:
            await world.subscription_on_stream(idle)
        await world.execution("ex-1", -5, 0.01)
        if read_ahead:
            await world.subscription_on_stream(idle)
        await world.tick(T0 + timedelta(minutes=28))  # 30 min after the execution: not yet
        assert world.sent == []
        await world.tick(T0 + timedelta(minutes=30))  # 30 min after creation: due
        assert len(world.sent) == 1
        ids.append(world.alert_ids()[0])
    assert ids[0] == ids[1]
