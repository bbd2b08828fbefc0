"""Poison records on `executions`, produced raw as any producer could: each one goes to
`executions.dlq` with its error, and the sink stores the records around it and moves on."""

import asyncio
import secrets
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
from aiokafka import AIOKafkaProducer
from prometheus_client import REGISTRY

from schemas import topics
from services.common.clickhouse import ClickHouse
from services.common.kafka import ensure_topics
from services.common.kafkaclients import KafkaClients
from services.logsink.sink import LogSink, SinkConfig
from tests.factories import completed, execution_record
from tests.records import matching_records

PARTITIONS = 3  # the session broker's topics (see test_infrastructure)


def _record(project: str, execution: str, **changes: Any) -> bytes:
    ended = datetime.now(UTC) - timedelta(seconds=5)
    event = completed(execution, "wf", ended=ended, duration_ms=1000, cost=None) | changes
    return execution_record(project, event)


def _deep(depth: int) -> msgspec.Raw:
    return msgspec.Raw(b"[" * depth + b"]" * depth)


async def _dead_letters(bootstrap: str, marker: bytes, count: int) -> list[Any]:
    return await matching_records(
        bootstrap, topics.EXECUTIONS_DLQ, PARTITIONS, lambda r: r.key == marker, count, 30
    )


def _metric(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


async def test_poison_records_go_to_the_dlq_and_the_records_after_them_are_stored(
    broker: str, tmp_path: Path
) -> None:
    await ensure_topics(broker, PARTITIONS)
    project = f"prj_poison_{secrets.token_hex(4)}"
    marker = project.encode()
    poison = {
        "not json": b"\xff not json " + marker,
        "deep": _record(project, "deep", finalOutput=_deep(5000)),
        "wrong type": _record(project, "wrong-type").replace(b'"retentionDays":30', b'"retentionDays":"x"'),
        # decodes, but ClickHouse refuses it (UInt64): the insert is split to find it
        "negative duration": _record(project, "negative", totalDurationMs=-1),
        "bad date": _record(project, "bad-date", endedAt="2026-13-45T99:00:00Z"),
    }  # fmt: skip
    too_large = b"\xff" * (2 * 1024 * 1024)  # more than the sink's producer copies to the DLQ
    values = [_record(project, "good-1"), *poison.values(), too_large, _record(project, "good-2")]
    producer = AIOKafkaProducer(
        bootstrap_servers=broker, acks="all", max_request_size=4 * 1024 * 1024
    )
    await producer.start()
    try:
        for value in values:  # one partition, in this order
            await producer.send_and_wait(topics.EXECUTIONS, value, key=marker, partition=0)
    finally:
        await producer.stop()
    before = _metric("cc_logsink_dead_letters_total")
    ch = ClickHouse(f"chdb://{tmp_path / 'ch'}")
    await ch.migrate()
    sink = LogSink(SinkConfig(group_id=f"sink-{project}", flush_s=0.1), ch, KafkaClients(broker))
    stop = asyncio.Event()
    running = asyncio.create_task(sink.run(stop))
    try:
        stored: list[tuple[Any, ...]] = []
        deadline = time.monotonic() + 60
        while len(stored) < 2 and time.monotonic() < deadline and not running.done():
            await asyncio.sleep(0.2)
            stored = await ch.rows(
                "SELECT execution_id, ingest_ts FROM executions WHERE project_id = {p:String} "
                "ORDER BY execution_id",
                {"p": project},
            )
        assert [row[0] for row in stored] == ["good-1", "good-2"]
        dead = await _dead_letters(broker, marker, len(poison) + 1)
        assert sorted(r.value or b"" for r in dead) == sorted([*poison.values(), b""])
        errors = {r.value: dict(r.headers)["error"].decode() for r in dead}
        assert "RecursionError" in errors[poison["deep"]]
        assert "executions:" in errors[poison["negative duration"]]
        assert all(dict(r.headers)["source"].startswith(b"executions/0/") for r in dead)
        # at least: the session's broker also holds other tests' poison, which this sink meets too
        assert _metric("cc_logsink_dead_letters_total") - before >= len(poison) + 1
        last_ts = max(row[1] for row in stored)
        for _ in range(100):  # the watermark follows the commit of the batch
            if sink.clock.watermark.get(0, 0) >= last_ts:
                break
            await asyncio.sleep(0.1)
        assert sink.clock.watermark.get(0, 0) >= last_ts  # the gapless bound moved on
    finally:
        stop.set()
        await asyncio.wait_for(running, 30)
        ch.close()
