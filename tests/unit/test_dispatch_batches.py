"""Records written a turn of the event loop at a time: one batch per partition, keys where the
producer would put them, and a refused record failing alone."""

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.partitioner import murmur2

from schemas import topics
from services.dispatcher.batches import TurnBatches
from tests.brokers import MemoryBroker, MemoryProducer

PARTITIONS = 4


class Counting(MemoryProducer):
    """Counts the batches it is sent."""

    def __init__(self, broker: MemoryBroker) -> None:
        super().__init__(broker)
        self.batches = 0

    async def send_batch(
        self, batch: object, topic: str, *, partition: int
    ) -> "asyncio.Future[None]":
        self.batches += 1
        return await super().send_batch(batch, topic, partition=partition)  # type: ignore[arg-type]


async def once(write: Callable[[], Awaitable[None]]) -> None:
    await write()


async def setup(max_bytes: int = 1024 * 1024) -> tuple[MemoryBroker, Counting, TurnBatches]:
    broker = MemoryBroker(max_request_bytes=max_bytes)
    await broker.create_topics([topics.DELIVERY_LOG], PARTITIONS)
    producer = Counting(broker)

    async def one(topic: str, value: bytes, key: bytes | None) -> None:
        await producer.send_and_wait(topic, value, key=key)

    return broker, producer, TurnBatches(producer, topics.DELIVERY_LOG, once, one)


async def test_the_records_of_one_turn_go_out_as_one_batch_per_partition_by_key() -> None:
    broker, producer, batches = await setup()
    keys = [f"dlv_{n}".encode() for n in range(40)]
    await asyncio.gather(*(batches.add(b"v" + key, key) for key in keys))
    used = {(murmur2(key) & 0x7FFFFFFF) % PARTITIONS for key in keys}
    assert producer.batches == len(used)
    for record in broker.records(topics.DELIVERY_LOG):
        assert record.key is not None
        assert record.partition == (murmur2(record.key) & 0x7FFFFFFF) % PARTITIONS
        assert record.value == b"v" + record.key
    # within a partition, in the order they were added
    for partition in broker.logs[topics.DELIVERY_LOG]:
        added = [k for k in keys if any(r.key == k for r in partition)]
        assert [r.key for r in partition] == added


async def test_a_record_the_broker_refuses_fails_alone() -> None:
    broker, _, batches = await setup(max_bytes=100)
    small = [batches.add(b"x" * 10, None) for _ in range(8)]  # keyless: spread round robin
    large = batches.add(b"y" * 200, None)
    await asyncio.gather(*small)
    with pytest.raises(MessageSizeTooLargeError):
        await large
    assert sorted(r.value for r in broker.records(topics.DELIVERY_LOG)) == [b"x" * 10] * 8
