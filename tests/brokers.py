"""Brokers for tests: a Kafka broker in memory, and a real one behind the same small surface.

`MemoryBroker` hands out producers and consumers with the surface the dispatcher uses
(`services.dispatcher.broker`) and aiokafka's meaning: partitions by key, offsets, pause and
resume, group commits, the rebalance listener told of its assignment. It has no sockets, no
threads and no retention; a group has one member at a time, which gets every partition of the
topics it subscribes to. `KafkaBroker` gives aiokafka clients of a running broker. The contract
suite (tests/broker_contract.py) runs the same tests against both, so the double stays honest.
"""

import asyncio
import contextlib
import itertools
from collections.abc import Iterable
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import (
    ConsumerStoppedError,
    IllegalOperation,
    MessageSizeTooLargeError,
    UnknownTopicOrPartitionError,
)
from aiokafka.partitioner import murmur2
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata, RecordMetadata, TopicPartition

from services.common.clock import Clock, now_ms, system_clock
from services.common.kafka import PRODUCER_MAX_REQUEST_BYTES, make_producer, topic_specs
from services.dispatcher.broker import Consumer, Message, Producer


class Broker(Protocol):
    """What a test needs of a broker: topics, producers and consumers."""

    async def create_topics(self, names: Iterable[str], partitions: int) -> None:
        """Create these topics, each with `partitions` partitions."""

    def producer(self) -> Producer:
        """A producer (not started)."""

    def consumer(self, **options: Any) -> Consumer:
        """A consumer with aiokafka's options (`group_id`, `auto_offset_reset`, ...), not started."""


class KafkaBroker:
    """aiokafka clients of the broker at `bootstrap`."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap

    async def create_topics(self, names: Iterable[str], partitions: int) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            await admin.create_topics(topic_specs(partitions, tuple(names)))
        finally:
            await admin.close()

    def producer(self) -> Producer:
        producer: Producer = make_producer(self.bootstrap)
        return producer

    def consumer(self, **options: Any) -> Consumer:
        consumer: Consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, enable_auto_commit=False, **options
        )
        return consumer


class MemoryBroker:
    """Topics as lists of records in memory; producers and consumers that share them."""

    def __init__(
        self, clock: Clock = system_clock, max_request_bytes: int = PRODUCER_MAX_REQUEST_BYTES
    ) -> None:
        self.clock = clock
        self.max_request_bytes = max_request_bytes  # what `make_producer` sends at most
        self.logs: dict[str, list[list[Message]]] = {}  # topic -> partition -> records
        self.committed: dict[tuple[str, TopicPartition], int] = {}  # (group, tp) -> offset
        self.members: dict[str, MemoryConsumer] = {}  # group -> its one member
        self._arrived = asyncio.Event()
        self._round_robin = itertools.count()

    async def create_topics(self, names: Iterable[str], partitions: int) -> None:
        for name in names:
            self.logs.setdefault(name, [[] for _ in range(partitions)])

    def producer(self) -> "MemoryProducer":
        return MemoryProducer(self)

    def consumer(self, **options: Any) -> "MemoryConsumer":
        return MemoryConsumer(self, **options)

    def records(self, topic: str) -> list[Message]:
        """Every record of `topic`, partition by partition."""
        return [record for log in self.logs.get(topic, []) for record in log]

    def append(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None,
        partition: int | None,
        timestamp_ms: int | None,
        headers: list[tuple[str, bytes]],
    ) -> RecordMetadata:
        """Write one record; wake the consumers waiting for one."""
        partitions = self.logs.get(topic)
        if partitions is None:
            raise UnknownTopicOrPartitionError(topic)
        if partition is None:
            spread = murmur2(key) & 0x7FFFFFFF if key is not None else next(self._round_robin)
            partition = spread % len(partitions)
        log = partitions[partition]
        timestamp = now_ms(self.clock) if timestamp_ms is None else timestamp_ms
        record = ConsumerRecord(
            topic=topic, partition=partition, offset=len(log), timestamp=timestamp,
            timestamp_type=0, key=key, value=value, checksum=None,
            serialized_key_size=len(key or b""), serialized_value_size=len(value or b""),
            headers=list(headers),
        )  # fmt: skip
        log.append(record)
        arrived, self._arrived = self._arrived, asyncio.Event()
        arrived.set()
        tp = TopicPartition(topic, partition)
        return RecordMetadata(topic, partition, tp, record.offset, timestamp, 0, 0)

    async def arrival(self, timeout_s: float) -> None:
        """Wait until a record is written, at most `timeout_s`."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._arrived.wait(), timeout_s)


class MemoryProducer:
    """A producer that writes to a `MemoryBroker` at once."""

    def __init__(self, broker: MemoryBroker) -> None:
        self.broker = broker

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def send_and_wait(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> RecordMetadata:
        size = len(value or b"") + len(key or b"")
        if size > self.broker.max_request_bytes:
            raise MessageSizeTooLargeError(f"{size} bytes is over the limit")
        await asyncio.sleep(0)  # a write is never synchronous for its caller
        return self.broker.append(topic, value, key, partition, timestamp_ms, headers or [])


class MemoryConsumer:
    """A consumer of a `MemoryBroker`: assigned partitions, or one group member."""

    def __init__(
        self,
        broker: MemoryBroker,
        group_id: str | None = None,
        auto_offset_reset: str = "latest",
        max_poll_records: int = 500,
        **_options: Any,  # timeouts and fetch sizes mean nothing in memory
    ) -> None:
        self.broker = broker
        self.group_id = group_id
        self.reset_to_earliest = auto_offset_reset == "earliest"
        self.max_poll_records = max_poll_records
        self._subscribed: list[str] = []
        self._listener: Any = None
        self._assigned: list[TopicPartition] | None = None  # None: a group join is due
        self._positions: dict[TopicPartition, int] = {}
        self._paused: set[TopicPartition] = set()
        self._closed = False
        self._turn = itertools.count()

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        self._closed = True
        if self.group_id is not None and self.broker.members.get(self.group_id) is self:
            del self.broker.members[self.group_id]

    def subscribe(self, topics: list[str], listener: Any = None) -> None:
        if self.group_id is None:
            raise IllegalOperation("subscribing needs a group_id")
        if listener is not None and not isinstance(listener, ConsumerRebalanceListener):
            raise TypeError("listener should be an instance of ConsumerRebalanceListener")
        self._subscribed, self._listener, self._assigned = list(topics), listener, None

    def assign(self, partitions: list[TopicPartition]) -> None:
        self._assigned = list(partitions)
        self._positions = {tp: p for tp, p in self._positions.items() if tp in partitions}

    def assignment(self) -> set[TopicPartition]:
        return set(self._assigned or ())

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self._positions[partition] = offset

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[Message]]:
        if self._closed:
            raise ConsumerStoppedError()
        if self._assigned is None:
            await self._join()
        fetched = self._fetch(partitions, max_records or self.max_poll_records)
        if not fetched and timeout_ms > 0:
            await self.broker.arrival(timeout_ms / 1000)
            fetched = self._fetch(partitions, max_records or self.max_poll_records)
        return fetched

    async def position(self, partition: TopicPartition) -> int:
        return self._position(partition)

    async def beginning_offsets(
        self, partitions: list[TopicPartition]
    ) -> dict[TopicPartition, int]:
        return dict.fromkeys(partitions, 0)

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: len(self._log(tp)) for tp in partitions}

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        logs = self.broker.logs.get(topic)
        return None if logs is None else set(range(len(logs)))

    async def topics(self) -> set[str]:
        return set(self.broker.logs)

    def pause(self, *partitions: TopicPartition) -> None:
        self._paused.update(partitions)

    def resume(self, *partitions: TopicPartition) -> None:
        self._paused.difference_update(partitions)

    def paused(self) -> set[TopicPartition]:
        return set(self._paused)

    async def commit(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        if self.group_id is None:
            raise IllegalOperation("committing needs a group_id")
        for tp, offset in offsets.items():
            at = offset.offset if isinstance(offset, OffsetAndMetadata) else int(offset)
            self.broker.committed[(self.group_id, tp)] = at

    async def committed(self, partition: TopicPartition) -> int | None:
        if self.group_id is None:
            return None
        return self.broker.committed.get((self.group_id, partition))

    async def _join(self) -> None:
        """Become the group's member and take every partition of the subscribed topics."""
        assert self.group_id is not None
        member = self.broker.members.setdefault(self.group_id, self)
        if member is not self:
            raise IllegalOperation("the memory broker holds one member per group")
        self._assigned = [
            TopicPartition(topic, partition)
            for topic in self._subscribed
            for partition in range(len(self.broker.logs.get(topic, [])))
        ]
        self._positions.clear()
        if self._listener is not None:
            await self._listener.on_partitions_assigned(list(self._assigned))

    def _fetch(
        self, partitions: tuple[TopicPartition, ...], limit: int
    ) -> dict[TopicPartition, list[Message]]:
        """Up to `limit` records of the readable partitions, from their positions on (the
        partitions take turns at going first, so that none starves)."""
        readable = [tp for tp in partitions or self._assigned or () if tp not in self._paused]
        if readable:
            start = next(self._turn) % len(readable)
            readable = readable[start:] + readable[:start]
        fetched: dict[TopicPartition, list[Message]] = {}
        for tp in readable:
            position = self._position(tp)
            records = self._log(tp)[position : position + limit]
            if records:
                fetched[tp] = records
                self._positions[tp] = position + len(records)
                limit -= len(records)
            if limit <= 0:
                break
        return fetched

    def _position(self, tp: TopicPartition) -> int:
        """Where reading `tp` goes on: the seek, else the group's commit, else the reset."""
        if tp not in self._positions:
            committed = None
            if self.group_id is not None:
                committed = self.broker.committed.get((self.group_id, tp))
            reset = 0 if self.reset_to_earliest else len(self._log(tp))
            self._positions[tp] = reset if committed is None else committed
        return self._positions[tp]

    def _log(self, tp: TopicPartition) -> list[Message]:
        logs = self.broker.logs.get(tp.topic, [])
        return logs[tp.partition] if tp.partition < len(logs) else []
