"""The dispatcher's whole I/O loop on the in-memory broker: journal read, subscriptions,
group assignment, lanes, retry tiers, dead letters, commits and restarts, with no sockets."""

import asyncio
import dataclasses
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
from aiokafka.structs import RecordMetadata, TopicPartition

from schemas import topics
from schemas.deliveries import AttemptsStarted, DeliveryAttempt, LogEntry
from schemas.destinations import WebhookDestination
from schemas.notifications import NotificationRecord
from schemas.payloads import DeliveryData, DeliveryPayload, Links
from services.common.config import Settings
from services.dispatcher.channels.base import Context, Result, Secrets
from services.dispatcher.loop import Rebalance
from services.dispatcher.service import Clients, Dispatcher, DispatcherConfig
from tests.brokers import MemoryBroker, MemoryProducer

DELAYS = (0.05, 0.1)
PARTITIONS = 2
SETTINGS = Settings(data_dir=Path("unused"), clickhouse_url="", database_url="",
                    secret_key="unit-test-secret-key-0123456789abcdef",
                    retry_delays_s=DELAYS)  # fmt: skip
CONFIG = DispatcherConfig(group="dispatcher-loop-test", commit_interval_s=0.02, drain_s=1.0)
_log_decoder = msgspec.json.Decoder(LogEntry)


class Channel:
    """A channel that answers from a plan per delivery (the last answer repeats), sits `hold_s`
    on each attempt of a `dlv_slow...` delivery, and remembers every attempt it was asked for."""

    def __init__(self, plans: dict[str, list[Result]] | None = None, hold_s: float = 0) -> None:
        self.plans = plans or {}
        self.hold_s = hold_s
        self.calls: dict[str, list[int]] = defaultdict(list)
        self.at: dict[str, list[float]] = defaultdict(list)

    async def send(self, record: NotificationRecord, secrets: Secrets, context: Context) -> Result:
        self.calls[record.deliveryId].append(record.attempt)
        self.at[record.deliveryId].append(time.monotonic())
        if self.hold_s and record.deliveryId.startswith("dlv_slow"):
            await asyncio.sleep(self.hold_s)
        plan = self.plans.get(record.deliveryId) or [Result(delivered=True, status=200)]
        return plan[min(len(self.calls[record.deliveryId]), len(plan)) - 1]


PAYLOAD = DeliveryPayload(
    id="evt_1", type="workflow.execution.completed", timestamp=1,
    data=DeliveryData(workflowId="wf"), links=Links(),
)  # fmt: skip


def notification(delivery: str, url: str = "https://hooks.example.com/a") -> NotificationRecord:
    return NotificationRecord(
        v=1, deliveryId=delivery, eventId=f"evt_{delivery}", subscriptionId="ntf_1",
        projectId="prj_1", notificationType="webhook", destination=WebhookDestination(url=url),
        payload=PAYLOAD, createdAtMs=1,
    )  # fmt: skip


async def new_broker() -> MemoryBroker:
    broker = MemoryBroker()
    await broker.create_topics([*topics.ALL, *topics.retry_tiers(len(DELAYS))], PARTITIONS)
    return broker


async def send(broker: MemoryBroker, *records: NotificationRecord | bytes) -> None:
    producer = broker.producer()
    for record in records:
        value = record if isinstance(record, bytes) else msgspec.json.encode(record)
        await producer.send_and_wait(topics.NOTIFICATIONS, value, key=b"ntf_1")


def log_of(broker: MemoryBroker) -> list[LogEntry]:
    return [_log_decoder.decode(r.value or b"") for r in broker.records(topics.DELIVERY_LOG)]


def attempts(broker: MemoryBroker, delivery: str) -> list[tuple[int, str]]:
    return [
        (entry.attempt, entry.outcome)
        for entry in log_of(broker)
        if isinstance(entry, DeliveryAttempt) and entry.deliveryId == delivery
    ]


def committed(broker: MemoryBroker) -> int:
    """Records of `notifications` the dispatcher's group has committed, over all partitions."""
    return sum(
        broker.committed.get((CONFIG.group, TopicPartition(topics.NOTIFICATIONS, p)), 0)
        for p in range(PARTITIONS)
    )


async def until(check: Callable[[], bool], timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


@asynccontextmanager
async def running(
    broker: MemoryBroker, channel: Channel, config: DispatcherConfig = CONFIG
) -> AsyncIterator[Dispatcher]:
    """A dispatcher over `broker`, delivering through `channel`, until the block ends."""
    dispatcher = Dispatcher(SETTINGS, config, channels={"webhook": channel.send})
    clients = Clients(
        consumer=broker.consumer(group_id=config.group, auto_offset_reset="earliest",
                                 max_poll_records=2000),
        producer=broker.producer(), journal_reader=broker.consumer(),
        subscriptions_reader=broker.consumer(), context=Context(http=aiohttp.ClientSession()),
    )  # fmt: skip
    stop = asyncio.Event()
    task = asyncio.create_task(dispatcher.run(stop, clients))
    try:
        yield dispatcher
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_a_notification_is_retried_on_its_tier_then_delivered_and_committed() -> None:
    broker = await new_broker()
    channel = Channel({"dlv_1": [Result(delivered=False, retryable=True, status=503),
                                 Result(delivered=True, status=200)]})  # fmt: skip
    async with running(broker, channel):
        await send(broker, notification("dlv_1"))
        await until(lambda: attempts(broker, "dlv_1") == [(1, "retrying"), (2, "delivered")])
        await until(lambda: committed(broker) == 1)
    assert channel.calls["dlv_1"] == [1, 2]
    (gap,) = [b - a for a, b in zip(channel.at["dlv_1"], channel.at["dlv_1"][1:], strict=False)]
    assert gap >= DELAYS[0]  # the retry waited on its tier until due
    (on_tier,) = broker.records(topics.retry_tier(1))
    assert msgspec.json.decode(on_tier.value or b"", type=NotificationRecord).attempt == 2
    starts = [e for e in log_of(broker) if isinstance(e, AttemptsStarted)]
    assert sorted(k for s in starts for k in s.attempts) == [("dlv_1", 0, 1), ("dlv_1", 0, 2)]


async def test_a_poison_record_is_dead_lettered_and_its_partition_goes_on() -> None:
    broker = await new_broker()
    async with running(broker, Channel()):
        await send(broker, b"\xff not a notification", notification("dlv_after"))
        await until(lambda: attempts(broker, "dlv_after") == [(1, "delivered")])
        await until(lambda: committed(broker) == 2)
    (dead,) = broker.records(topics.DELIVERIES_DLQ)
    assert dead.value == b"\xff not a notification"
    assert dict(dead.headers)["source"].startswith(b"notifications/")


async def test_a_restart_makes_no_attempt_twice_and_counts_one_in_flight_as_made() -> None:
    broker = await new_broker()
    producer = broker.producer()
    ended = DeliveryAttempt(
        v=1, deliveryId="dlv_done", eventId="evt", eventType="t", subscriptionId="ntf_1",
        projectId="prj_1", notificationType="webhook", round=0, attempt=1,
        outcome="delivered", attemptedAtMs=1, durationMs=1, target="https://hooks.example.com",
    )  # fmt: skip
    for entry in (AttemptsStarted(v=1, attempts=[("dlv_flight", 0, 1)], startedAtMs=1), ended):
        await producer.send_and_wait(topics.DELIVERY_LOG, msgspec.json.encode(entry))
    channel = Channel()
    async with running(broker, channel):
        await send(broker, notification("dlv_done"), notification("dlv_flight"))
        await until(lambda: attempts(broker, "dlv_flight") == [(1, "retrying"), (2, "delivered")])
        await until(lambda: committed(broker) == 2)
    assert channel.calls == {"dlv_flight": [2]}  # neither attempt 1 went out again
    assert attempts(broker, "dlv_done") == [(1, "delivered")]  # only the one read back


async def test_a_new_member_goes_on_from_what_the_stopped_one_committed() -> None:
    broker = await new_broker()
    first = Channel()
    async with running(broker, first):
        await send(broker, *(notification(f"dlv_{n}") for n in range(3)))
        await until(lambda: committed(broker) == 3)
    await send(broker, *(notification(f"dlv_{n}") for n in range(3, 5)))
    second = Channel()
    async with running(broker, second):
        await until(lambda: committed(broker) == 5)
    assert sorted(first.calls) == ["dlv_0", "dlv_1", "dlv_2"]
    assert sorted(second.calls) == ["dlv_3", "dlv_4"]


async def test_a_stalled_lane_defers_its_records_and_the_others_go_on() -> None:
    broker = await new_broker()
    config = dataclasses.replace(CONFIG, in_flight_per_lane=1, queued_per_lane=1, lane_stall_s=0.05)
    channel = Channel(hold_s=0.3)
    slow = [notification(f"dlv_slow{n}", "https://slow.example.com/a") for n in range(4)]
    async with running(broker, channel, config):
        await send(broker, *slow)
        await until(lambda: "dlv_slow0" in channel.calls)
        first_sent = time.monotonic()
        await asyncio.sleep(0.1)  # the slow lane is full, and stalls: it has not moved since
        await send(broker, notification("dlv_fast"))
        await until(lambda: attempts(broker, "dlv_fast") == [(1, "delivered")])
        assert time.monotonic() - first_sent < 0.3  # before the slow receiver's first answer
        await until(lambda: all(attempts(broker, r.deliveryId) for r in slow))
    for record in slow:  # put off, not counted as an attempt, and made once
        assert attempts(broker, record.deliveryId) == [(1, "delivered")]
        assert channel.calls[record.deliveryId] == [1]
    assert broker.records(topics.retry_tier(1))  # the deferred ones waited there


class GatedProducer(MemoryProducer):
    """Writes to `gated_topic` wait until `gate` opens (`entered` says one is waiting)."""

    def __init__(self, broker: MemoryBroker, gated_topic: str) -> None:
        super().__init__(broker)
        self.gated_topic = gated_topic
        self.gate = asyncio.Event()
        self.entered = asyncio.Event()

    async def send_and_wait(self, topic: str, *args: Any, **kwargs: Any) -> RecordMetadata:
        if topic == self.gated_topic:
            self.entered.set()
            await self.gate.wait()
        return await super().send_and_wait(topic, *args, **kwargs)


async def test_a_revocation_waits_for_the_record_being_handed_on_and_hands_no_more_on() -> None:
    # The group's coordinator revokes partitions from a task of its own, while the poll loop
    # may be waiting on a write for the head of a partition (here a dead letter).
    broker = await new_broker()
    producer = GatedProducer(broker, topics.DELIVERIES_DLQ)
    channel = Channel()
    dispatcher = Dispatcher(SETTINGS, CONFIG, channels={"webhook": channel.send})
    consumer = broker.consumer(group_id=CONFIG.group, auto_offset_reset="earliest")
    clients = Clients(
        consumer=consumer, producer=producer, journal_reader=broker.consumer(),
        subscriptions_reader=broker.consumer(), context=Context(http=aiohttp.ClientSession()),
    )  # fmt: skip
    loop = dispatcher.loop(clients)

    async def caught_up() -> None:
        pass

    listener = Rebalance(loop, CONFIG.drain_s, caught_up)
    consumer.subscribe([topics.NOTIFICATIONS, *dispatcher.schedule.tiers()], listener=listener)
    await send(broker, b"\xff poison", notification("dlv_next"))  # one partition (its key)
    try:
        polling = asyncio.create_task(loop.poll())
        await asyncio.wait_for(producer.entered.wait(), 5)  # the head's write has begun
        assert len(loop.parts) > 1
        revoking = asyncio.create_task(listener.on_partitions_revoked(sorted(loop.parts)))
        await asyncio.sleep(0.05)
        assert not revoking.done()  # it waits for the record being handed on
        producer.gate.set()
        await asyncio.wait_for(revoking, 5)
        await asyncio.wait_for(polling, 5)  # and the poll ends without error
        assert loop.parts == {}
        assert committed(broker) == 1  # the dead letter's record, committed by the revocation
        assert channel.calls == {}  # the next record was not handed on: it is not ours now
    finally:
        await clients.context.http.close()
