"""The broker contract: what the dispatcher relies on of a broker, as one suite of tests.

`BrokerContract` is subclassed once per broker: in tests/unit against the in-memory double
(tests/brokers.py), in tests/integration against the embedded broker through aiokafka. A test
that passes on one and fails on the other is a difference the double must not have.
"""

import asyncio
import secrets
import time
from typing import Any

import pytest
from aiokafka import ConsumerRebalanceListener
from aiokafka.errors import ConsumerStoppedError, IllegalOperation
from aiokafka.structs import OffsetAndMetadata, TopicPartition

from services.common.kafka import REFUSED_RECORD_ERRORS
from services.dispatcher.broker import Consumer, Message
from tests.brokers import Broker

GROUP_OPTIONS = {  # a group join on the embedded broker takes seconds: keep its timeouts short
    "auto_offset_reset": "earliest", "session_timeout_ms": 6000, "heartbeat_interval_ms": 500,
    "rebalance_timeout_ms": 2000, "fetch_max_wait_ms": 50,
}  # fmt: skip


def fresh(name: str) -> str:
    """A topic or group name no other test uses (the embedded broker is shared)."""
    return f"contract-{name}-{secrets.token_hex(4)}"


async def read(consumer: Consumer, count: int, timeout_s: float = 20) -> list[Message]:
    """The next `count` records, or fewer once `timeout_s` has passed."""
    found: list[Message] = []
    deadline = time.monotonic() + timeout_s
    while len(found) < count and time.monotonic() < deadline:
        batch = await consumer.getmany(timeout_ms=100)
        found += [record for records in batch.values() for record in records]
    return found


async def reader(broker: Broker, *partitions: TopicPartition, at: int = 0) -> Consumer:
    """A started consumer of `partitions`, outside any group, reading from offset `at`."""
    consumer = broker.consumer(fetch_max_wait_ms=50)
    await consumer.start()
    consumer.assign(list(partitions))
    for tp in partitions:
        consumer.seek(tp, at)
    return consumer


class Listener(ConsumerRebalanceListener):
    """A rebalance listener that remembers what it was told."""

    def __init__(self) -> None:
        self.assigned: list[TopicPartition] = []

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self.assigned += assigned

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        pass


class BrokerContract:
    """The tests; a subclass provides the `backend` fixture (a `tests.brokers.Broker`)."""

    @pytest.fixture
    def backend(self) -> Broker:
        raise NotImplementedError

    async def test_records_come_back_in_order_with_key_value_headers_and_time(
        self, backend: Broker
    ) -> None:
        topic = fresh("order")
        await backend.create_topics([topic], 1)
        producer = backend.producer()
        await producer.start()
        before_ms = int(time.time() * 1000)
        sent = [
            await producer.send_and_wait(topic, f"v{n}".encode(), key=b"k", headers=[("h", b"1")])
            for n in range(5)
        ]
        after_ms = int(time.time() * 1000)
        await producer.stop()
        consumer = await reader(backend, TopicPartition(topic, 0))
        got = await read(consumer, 5)
        await consumer.stop()
        assert [r.value for r in got] == [f"v{n}".encode() for n in range(5)]
        assert [r.offset for r in got] == [m.offset for m in sent] == list(range(5))
        assert {r.key for r in got} == {b"k"}
        assert [[tuple(h) for h in r.headers] for r in got] == [[("h", b"1")]] * 5
        assert all(before_ms - 1000 <= r.timestamp <= after_ms + 1000 for r in got)

    async def test_one_key_keeps_to_one_partition_and_a_chosen_partition_is_kept(
        self, backend: Broker
    ) -> None:
        topic = fresh("keys")
        await backend.create_topics([topic], 4)
        producer = backend.producer()
        await producer.start()
        keyed = [await producer.send_and_wait(topic, b"x", key=b"ntf_1") for _ in range(6)]
        chosen = await producer.send_and_wait(topic, b"here", partition=3)
        await producer.stop()
        assert len({m.partition for m in keyed}) == 1
        assert [m.offset for m in keyed] == list(range(6))
        consumer = await reader(backend, TopicPartition(topic, 3), at=chosen.offset)
        (record,) = await read(consumer, 1)
        await consumer.stop()
        assert (record.partition, record.value) == (3, b"here")

    async def test_offsets_positions_and_seeks(self, backend: Broker) -> None:
        topic = fresh("offsets")
        await backend.create_topics([topic], 1)
        tp = TopicPartition(topic, 0)
        producer = backend.producer()
        await producer.start()
        for n in range(3):
            await producer.send_and_wait(topic, bytes([n]))
        await producer.stop()
        consumer = await reader(backend, tp, at=1)
        assert await consumer.beginning_offsets([tp]) == {tp: 0}
        assert await consumer.end_offsets([tp]) == {tp: 3}
        assert await consumer.position(tp) == 1
        assert [r.value for r in await read(consumer, 2)] == [b"\x01", b"\x02"]
        assert await consumer.position(tp) == 3
        consumer.seek(tp, 0)
        assert [r.offset for r in await read(consumer, 3)] == [0, 1, 2]
        await consumer.stop()

    async def test_a_read_waits_for_records_up_to_its_timeout(self, backend: Broker) -> None:
        topic = fresh("wait")
        await backend.create_topics([topic], 1)
        consumer = await reader(backend, TopicPartition(topic, 0))
        started = time.monotonic()
        assert await consumer.getmany(timeout_ms=300) == {}
        assert time.monotonic() - started >= 0.2
        producer = backend.producer()
        await producer.start()

        async def later() -> None:
            await asyncio.sleep(0.2)
            await producer.send_and_wait(topic, b"late")

        writer = asyncio.create_task(later())
        started = time.monotonic()
        got: dict[TopicPartition, list[Message]] = {}
        while not got and time.monotonic() - started < 10:
            got = await consumer.getmany(timeout_ms=5000)
        await writer
        await producer.stop()
        await consumer.stop()
        assert [r.value for records in got.values() for r in records] == [b"late"]
        assert time.monotonic() - started < 3  # woken by the record, not by the timeout

    async def test_a_paused_partition_yields_nothing_until_resumed(self, backend: Broker) -> None:
        topic = fresh("pause")
        await backend.create_topics([topic], 2)
        first, second = TopicPartition(topic, 0), TopicPartition(topic, 1)
        producer = backend.producer()
        await producer.start()
        await producer.send_and_wait(topic, b"0", partition=0)
        await producer.send_and_wait(topic, b"1", partition=1)
        consumer = await reader(backend, first, second)
        consumer.pause(first)
        assert consumer.paused() == {first}
        assert [r.value for r in await read(consumer, 2, timeout_s=1)] == [b"1"]
        consumer.resume(first)
        assert consumer.paused() == set()
        assert [r.value for r in await read(consumer, 1)] == [b"0"]
        await producer.stop()
        await consumer.stop()

    async def test_a_fetch_returns_at_most_max_records(self, backend: Broker) -> None:
        topic = fresh("max")
        await backend.create_topics([topic], 1)
        producer = backend.producer()
        await producer.start()
        for n in range(10):
            await producer.send_and_wait(topic, bytes([n]))
        await producer.stop()
        consumer = await reader(backend, TopicPartition(topic, 0))
        batch: dict[TopicPartition, list[Message]] = {}
        deadline = time.monotonic() + 10
        while not batch and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200, max_records=3)
        await consumer.stop()
        assert 1 <= sum(len(records) for records in batch.values()) <= 3

    async def test_a_record_over_the_producers_limit_is_refused(self, backend: Broker) -> None:
        topic = fresh("large")
        await backend.create_topics([topic], 1)
        producer = backend.producer()
        await producer.start()
        with pytest.raises(REFUSED_RECORD_ERRORS):
            await producer.send_and_wait(topic, b"x" * (2 * 1024 * 1024))
        await producer.stop()

    async def test_topics_and_their_partitions_are_known(self, backend: Broker) -> None:
        topic = fresh("meta")
        await backend.create_topics([topic], 3)
        consumer = backend.consumer()
        await consumer.start()
        assert topic in await consumer.topics()
        assert consumer.partitions_for_topic(topic) == {0, 1, 2}
        assert consumer.partitions_for_topic(fresh("missing")) is None
        await consumer.stop()

    async def test_a_consumer_outside_a_group_cannot_commit_nor_read_once_stopped(
        self, backend: Broker
    ) -> None:
        topic = fresh("stopped")
        await backend.create_topics([topic], 1)
        tp = TopicPartition(topic, 0)
        consumer = await reader(backend, tp)
        # A read first: aiokafka cannot stop a consumer whose background task never ran.
        assert await consumer.getmany(timeout_ms=10) == {}
        with pytest.raises(IllegalOperation):
            await consumer.commit({tp: OffsetAndMetadata(0, "")})
        await consumer.stop()
        with pytest.raises(ConsumerStoppedError):
            await consumer.getmany(timeout_ms=10)

    async def test_a_group_member_gets_every_partition_and_the_next_starts_at_its_commits(
        self, backend: Broker
    ) -> None:
        topic, group = fresh("group"), fresh("group")
        await backend.create_topics([topic], 2)
        tps = [TopicPartition(topic, 0), TopicPartition(topic, 1)]
        producer = backend.producer()
        await producer.start()
        for n in range(4):
            await producer.send_and_wait(topic, bytes([n]), partition=n % 2)
        listener = Listener()
        member = await self._member(backend, group, topic, listener)
        assert len(await read(member, 4)) == 4
        assert sorted(listener.assigned) == tps
        await member.commit({tps[0]: OffsetAndMetadata(2, ""), tps[1]: OffsetAndMetadata(1, "")})
        assert await member.committed(tps[0]) == 2
        await member.stop()
        await producer.send_and_wait(topic, b"new", partition=0)
        member = await self._member(backend, group, topic, Listener())
        got = await read(member, 2)
        await member.stop()
        await producer.stop()
        assert sorted((r.partition, r.offset, r.value) for r in got) == [
            (0, 2, b"new"), (1, 1, bytes([3]))
        ]  # fmt: skip

    async def _member(self, backend: Broker, group: str, topic: str, listener: Listener) -> Any:
        member = backend.consumer(group_id=group, **GROUP_OPTIONS)
        await member.start()
        member.subscribe([topic], listener=listener)
        return member
