"""Records read back from the topics of a test broker."""

import time
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition


async def consume_all(bootstrap: str, topic: str, wait_ms: int = 5000) -> list[Any]:
    """Every record of a topic from the start (aiokafka ConsumerRecords)."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    try:
        fetched = await consumer.getmany(timeout_ms=wait_ms)
    finally:
        await consumer.stop()
    return [record for records in fetched.values() for record in records]


async def matching_records(
    bootstrap: str,
    topic: str,
    partitions: int,
    match: Callable[[Any], bool],
    count: int,
    timeout_s: float = 20,
) -> list[Any]:
    """The records of `topic` from its start that `match`, read until there are `count` of
    them or `timeout_s` has passed."""
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await reader.start()
    found: list[Any] = []
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        reader.assign(tps)
        await reader.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout_s
        while len(found) < count and time.monotonic() < deadline:
            batch = await reader.getmany(timeout_ms=200)
            found += [r for rs in batch.values() for r in rs if match(r)]
    finally:
        await reader.stop()
    return found
