"""`codecourier logsink` stores `delivery-log` next to `executions` and commits both."""

import asyncio
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from schemas import topics
from schemas.deliveries import DeliveryAttempt
from schemas.events import topic_key
from services.common.broker import EmbeddedBroker
from services.common.clickhouse import ClickHouse
from services.common.clock import now_ms
from services.common.kafka import ensure_topics
from tests.factories import execution, execution_record
from tests.processes import CLI, service_env, start_service
from tests.records import consume_all

PARTITIONS = 2
DELIVERIES = 100  # three attempts each, the first carrying the payload
REPLAYED = 40  # attempts sent twice, as a dispatcher restart would
EXECUTIONS = 10


def _attempt(i: int, n: int, at_ms: int) -> DeliveryAttempt:
    return DeliveryAttempt(
        v=1, deliveryId=f"dlv_{i}", eventId=f"evt_{i}", eventType="workflow.execution.completed",
        subscriptionId=f"ntf_{i % 3}", projectId="prj_it", notificationType="webhook", round=0,
        attempt=n, outcome="delivered" if n == 3 else "retrying", attemptedAtMs=at_ms + n * 1000,
        durationMs=5 * n, target="https://hooks.example.com", responseCode=200 if n == 3 else 503,
        nextAttemptAtMs=None if n == 3 else at_ms + (n + 1) * 1000,
        payload=msgspec.Raw(msgspec.json.encode({"id": f"evt_{i}"})) if n == 1 else None,
    )  # fmt: skip


def _execution(i: int) -> tuple[bytes, bytes]:
    ended = datetime.now(UTC) - timedelta(seconds=5)
    event = execution(f"exec-{i}", "wf-it", ended=ended, duration_ms=1000)
    return topic_key("prj_it", "wf-it"), execution_record("prj_it", event)


async def _committed(bootstrap: str, topic: str) -> int:
    reader = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id="logsink", enable_auto_commit=False
    )
    await reader.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        return sum([(await reader.committed(tp)) or 0 for tp in tps])
    finally:
        await reader.stop()


async def _produce(bootstrap: str) -> dict[str, int]:
    """Every record; returns the acknowledged end offsets summed per topic."""
    at = now_ms()
    attempts = [_attempt(i, n, at) for i in range(DELIVERIES) for n in (1, 2, 3)]
    records = [
        (topics.DELIVERY_LOG, a.deliveryId.encode(), msgspec.json.encode(a)) for a in attempts
    ]
    records += records[:REPLAYED]
    poison = [
        b"\xff not json",
        msgspec.json.encode(_attempt(0, 1, at)).replace(b'"attempt":1', b'"attempt":0'),
    ]
    records += [(topics.DELIVERY_LOG, b"poison", value) for value in poison]
    records += [(topics.EXECUTIONS, *_execution(i)) for i in range(EXECUTIONS)]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    ends: dict[tuple[str, int], int] = {}
    try:
        futures = [await producer.send(topic, value, key=key) for topic, key, value in records]
        for meta in await asyncio.gather(*futures):
            ends[meta.topic, meta.partition] = max(
                ends.get((meta.topic, meta.partition), 0), meta.offset + 1
            )
    finally:
        await producer.stop()
    totals: dict[str, int] = {}
    for (topic, _), end in ends.items():
        totals[topic] = totals.get(topic, 0) + end
    assert totals == {
        topics.DELIVERY_LOG: 3 * DELIVERIES + REPLAYED + 2,
        topics.EXECUTIONS: EXECUTIONS,
    }
    return totals


@pytest.mark.slow
async def test_the_sink_stores_each_attempt_once_dead_letters_poison_and_commits(
    tmp_path: Path,
) -> None:
    broker = EmbeddedBroker(0, tmp_path / "broker.log")
    bootstrap = await broker.start()
    sink = None
    try:
        await ensure_topics(bootstrap, PARTITIONS)
        totals = await _produce(bootstrap)
        settings = {
            "CC_CLICKHOUSE_URL": f"chdb://{tmp_path / 'ch'}",
            "CC_KAFKA_PARTITIONS": str(PARTITIONS),
        }
        env = service_env(tmp_path, bootstrap=bootstrap, log_level="info", settings=settings)
        sink = start_service([CLI, "logsink"], env, tmp_path / "sink.log")
        deadline = time.monotonic() + 90
        committed = {}
        while time.monotonic() < deadline:
            committed = {topic: await _committed(bootstrap, topic) for topic in totals}
            if committed == totals:
                break
            await asyncio.sleep(0.5)
        assert committed == totals  # both topics, commits only after the inserts
        dead = [
            r for r in await consume_all(bootstrap, topics.DELIVERY_LOG_DLQ) if r.key == b"poison"
        ]
        sink.send_signal(signal.SIGTERM)
        assert sink.wait(60) == 0
    finally:
        if sink is not None and sink.poll() is None:
            sink.kill()
        broker.stop()
    assert len(dead) == 2 and all(dict(r.headers)["error"] for r in dead)

    ch = ClickHouse(f"chdb://{tmp_path / 'ch'}")  # chDB: read only once the sink process is gone
    try:
        ((stored, distinct),) = await ch.rows(
            "SELECT count(), uniqExact(delivery_id, round, attempt) FROM delivery_attempts FINAL"
        )
        ((statuses,),) = await ch.rows(
            "SELECT groupUniqArray(s) FROM (SELECT argMax(outcome, (round, attempt)) AS s "
            "FROM delivery_attempts FINAL GROUP BY delivery_id)"
        )
        payloads = await ch.rows(
            "SELECT attempt, countIf(payload != ''), any(payload) FROM delivery_attempts FINAL "
            "WHERE delivery_id = 'dlv_7' GROUP BY attempt ORDER BY attempt"
        )
        ((executions,),) = await ch.rows("SELECT count() FROM executions")
    finally:
        ch.close()
    assert (stored, distinct) == (3 * DELIVERIES, 3 * DELIVERIES)  # replays collapsed
    assert statuses == ["delivered"]
    assert [(n, has) for n, has, _ in payloads] == [(1, 1), (2, 0), (3, 0)]
    assert payloads[0][2] == '{"id":"evt_7"}'
    assert executions == EXECUTIONS
