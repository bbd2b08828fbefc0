"""The embedded broker and chDB: topics with the configured partitions, versioned migrations."""

from pathlib import Path

from aiokafka import AIOKafkaProducer

from schemas import topics
from services.alerts.ticks import OffsetReader
from services.common.broker import EmbeddedBroker
from services.common.clickhouse import ClickHouse
from services.common.kafka import ensure_topics, ping


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
