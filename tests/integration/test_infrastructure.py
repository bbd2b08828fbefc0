"""The embedded broker and chDB: topics with the configured partitions, versioned migrations."""

from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient

from schemas import topics
from services.common.clickhouse import ClickHouse
from services.common.kafka import ensure_topics, ping


async def test_topics_are_created_explicitly_with_the_configured_partitions(broker: str) -> None:
    await ping(broker)
    await ensure_topics(broker, partitions=3)
    assert await ensure_topics(broker, partitions=3) == []
    admin = AIOKafkaAdminClient(bootstrap_servers=broker)
    await admin.start()
    try:
        described = await admin.describe_topics(list(topics.ALL))
    finally:
        await admin.close()
    counts = {t["topic"]: len(t["partitions"]) for t in described}
    assert counts == dict.fromkeys(topics.ALL, 3)


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
