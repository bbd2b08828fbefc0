"""The embedded broker and chDB: topics with the configured partitions, fetch waits, versioned
migrations."""

import time
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from schemas import topics
from services.alerts.ticks import OffsetReader
from services.common.broker import EmbeddedBroker
from services.common.clickhouse import ClickHouse
from services.common.kafka import QUIET_WAIT_MS, FetchWait, ensure_topics, ping


async def partition_counts(bootstrap: str, names: list[str]) -> dict[str, int]:
    reader = OffsetReader(bootstrap)
    try:
        return await reader.partition_counts(names)
    finally:
        await reader.stop()


async def test_topics_are_created_explicitly_with_the_configured_partitions(broker: str) -> None:
    await ping(broker)
    await ensure_topics(broker, partitions=3)
    assert await ensure_topics(broker, partitions=3) == []
    assert await partition_counts(broker, list(topics.ALL)) == dict.fromkeys(topics.ALL, 3)


async def test_a_topic_auto_created_on_a_fresh_broker_is_made_again_with_the_right_count(
    tmp_path: Path,
) -> None:
    """What `up` does after its broker restarted empty: a client that asked for `executions`
    first had the broker create it with its own count (4)."""
    embedded = EmbeddedBroker(0, tmp_path / "broker.log")
    bootstrap = await embedded.start()
    try:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(topics.EXECUTIONS, b"first")
        finally:
            await producer.stop()
        assert await partition_counts(bootstrap, [topics.EXECUTIONS]) == {topics.EXECUTIONS: 4}
        await ensure_topics(bootstrap, partitions=2)  # an ordinary start keeps what exists
        assert await partition_counts(bootstrap, [topics.EXECUTIONS]) == {topics.EXECUTIONS: 4}
        created = await ensure_topics(bootstrap, partitions=2, recreate_miscounted=True)
        assert topics.EXECUTIONS in created
        counts = await partition_counts(bootstrap, list(topics.ALL))
        assert counts == dict.fromkeys(topics.ALL, 2)
    finally:
        embedded.stop()


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_a_quiet_consumer_waits_longer_per_fetch_and_still_gets_the_next_record(
    broker: str,
) -> None:
    topic = f"fetch-wait-{uuid.uuid4().hex[:8]}"
    producer = AIOKafkaProducer(bootstrap_servers=broker)
    await producer.start()
    consumer = AIOKafkaConsumer(bootstrap_servers=broker, fetch_max_wait_ms=25)
    try:
        await producer.send_and_wait(topic, b"before", partition=0)  # the topic exists now
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.start()
        await consumer.seek_to_end(tp)
        clock = FakeClock()
        wait = FetchWait(25, clock=clock)
        fetcher = consumer._fetcher
        assert fetcher._fetch_max_wait_ms == 25  # where aiokafka keeps the wait it sends
        assert wait.after_fetch(consumer, 0) == 25  # not quiet long enough yet
        clock.now += 1.5
        assert wait.after_fetch(consumer, 0) == QUIET_WAIT_MS
        assert fetcher._fetch_max_wait_ms == QUIET_WAIT_MS
        await producer.send_and_wait(topic, b"after", partition=0)
        got: list[bytes | None] = []
        deadline = time.monotonic() + 10
        while not got:
            assert time.monotonic() < deadline, "the record after the quiet never came"
            fetched = await consumer.getmany(tp, timeout_ms=500)
            got = [m.value for m in fetched.get(tp, [])]
            wait.after_fetch(consumer, len(got))
        assert got == [b"after"]
        assert fetcher._fetch_max_wait_ms == 25  # records flow: short waits again
    finally:
        await consumer.stop()
        await producer.stop()


async def test_clickhouse_migrations_apply_once_in_order(tmp_path: Path) -> None:
    migrations = [
        (1, "first", ["CREATE TABLE IF NOT EXISTS m1 (a UInt8) ENGINE = MergeTree ORDER BY a"]),
        (2, "second", ["CREATE TABLE IF NOT EXISTS m2 (b UInt8) ENGINE = MergeTree ORDER BY b"]),
    ]
    ch = ClickHouse(f"chdb://{tmp_path / 'ch'}")
    try:
        assert await ch.migrate(migrations[:1]) == [1]
        assert await ch.migrate(migrations) == [2]
        assert await ch.migrate(migrations) == []
        assert await ch.rows("SELECT count() FROM m2") == [(0,)]
    finally:
        ch.close()
