"""kill -9 of a log sink process mid-stream: after a restart every execution is stored once; and
two batches in flight never store one execution twice."""

import asyncio
import signal
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from schemas import topics
from schemas.events import topic_key
from services.common.broker import EmbeddedBroker
from services.common.clickhouse import ClickHouse
from services.common.kafka import ensure_topics
from services.common.kafkaclients import KafkaClients
from services.common.workers import SinkConfig
from services.logsink.batch import Batch
from services.logsink.sink import LogSink
from tests.factories import execution, execution_record
from tests.processes import CLI, service_env, start_service

TOTAL = 50_000
RESENT = 2_000  # resent executions: must not become second rows either
PARTITIONS = 4


def _record(i: int) -> tuple[bytes, bytes]:
    ended = datetime.now(UTC) - timedelta(seconds=5)
    level = "error" if i % 10 == 0 else "info"
    event = execution(f"exec-{i}", f"wf-{i % 37}", ended=ended, duration_ms=1000, level=level)
    return topic_key("prj_crash", event.workflowId), execution_record("prj_crash", event)


def _start_sink(tmp_path: Path, bootstrap: str, name: str) -> subprocess.Popen[bytes]:
    settings = {
        "CC_CLICKHOUSE_URL": f"chdb://{tmp_path / 'ch'}",
        "CC_KAFKA_PARTITIONS": str(PARTITIONS),
    }
    env = service_env(tmp_path, bootstrap=bootstrap, log_level="info", settings=settings)
    return start_service([CLI, "logsink"], env, tmp_path / f"{name}.log")


async def _committed(bootstrap: str) -> dict[int, int]:
    reader = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id="logsink", enable_auto_commit=False
    )
    await reader.start()
    try:
        return {
            p: (await reader.committed(TopicPartition(topics.EXECUTIONS, p))) or 0
            for p in range(PARTITIONS)
        }
    finally:
        await reader.stop()


async def _wait_committed(bootstrap: str, target: int, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done = sum((await _committed(bootstrap)).values())
        if done >= target:
            return done
        await asyncio.sleep(0.5)
    return sum((await _committed(bootstrap)).values())


@pytest.mark.slow
async def test_kill_minus_nine_mid_stream_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    broker = EmbeddedBroker(0, tmp_path / "broker.log")
    bootstrap = await broker.start()
    sink = None
    try:
        await ensure_topics(bootstrap, PARTITIONS)
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
        await producer.start()
        records = [_record(i) for i in range(TOTAL)] + [
            _record(i) for i in range(0, TOTAL, TOTAL // RESENT)
        ]

        ends: dict[int, int] = {}

        async def produce(chunk: list[tuple[bytes, bytes]]) -> None:
            futures = [
                await producer.send(topics.EXECUTIONS, value, key=key) for key, value in chunk
            ]
            for meta in await asyncio.gather(*futures):
                ends[meta.partition] = max(ends.get(meta.partition, 0), meta.offset + 1)

        sink = _start_sink(tmp_path, bootstrap, "first")
        await produce(records[:10_000])
        first_progress = await _wait_committed(bootstrap, 1, 60)
        assert first_progress > 0, "the sink never committed anything"
        streaming = asyncio.create_task(produce(records[10_000:]))
        await asyncio.sleep(1.0)
        sink.send_signal(signal.SIGKILL)  # mid-stream: records keep arriving while it is dead
        sink.wait(10)
        at_kill = sum((await _committed(bootstrap)).values())
        await streaming
        await producer.stop()
        # The acknowledged offsets, not ListOffsets: the embedded broker reports the latest
        # offset of a partition a little short (the last batch's base), data is all there.
        total_records = sum(ends.values())
        assert total_records == len(records)
        assert at_kill < total_records, "kill came after the sink had finished: not mid-stream"

        sink = _start_sink(tmp_path, bootstrap, "second")
        caught_up = await _wait_committed(bootstrap, total_records, 240)
        assert caught_up == total_records
        sink.send_signal(signal.SIGTERM)
        assert sink.wait(60) == 0
    finally:
        if sink is not None and sink.poll() is None:
            sink.kill()
        broker.stop()

    ch = ClickHouse(f"chdb://{tmp_path / 'ch'}")  # chDB: read only once the sink process is gone
    try:
        ((rows, distinct),) = await ch.rows(
            "SELECT count(), uniqExact(execution_id) FROM executions"
        )
        ((payloads,),) = await ch.rows("SELECT uniqExact(execution_id) FROM execution_payloads")
        ((errors,),) = await ch.rows("SELECT count() FROM executions WHERE level = 'error'")
        ts_unique = await ch.rows(
            "SELECT count() FROM (SELECT partition, ingest_ts FROM executions "
            "GROUP BY partition, ingest_ts HAVING count() > 1)"
        )
    finally:
        ch.close()
    assert (rows, distinct) == (TOTAL, TOTAL)
    assert payloads == TOTAL
    assert errors == TOTAL // 10
    assert ts_unique == [(0,)]  # ingest_ts strictly increasing per partition across the restart


class CommittedDuringLookup(ClickHouse):
    """The real chDB, with a batch committed while a stored-key lookup runs: its keys leave the
    sink's in-flight set after the lookup read the table, before its rows were there."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.commit: Callable[[], None] = lambda: None

    async def rows(self, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        found = await super().rows(*args, **kwargs)
        self.commit()
        return found


async def test_a_batch_committed_during_the_next_lookup_still_keeps_its_executions_out(
    tmp_path: Path,
) -> None:
    """The race seen under load: batch B's lookup reads the table before batch A's rows are
    written, and A commits (leaving the in-flight set) before B compares; B must still drop
    the executions A holds."""
    ch = CommittedDuringLookup(f"chdb://{tmp_path / 'ch'}")
    try:
        await ch.migrate()
        sink = LogSink(SinkConfig(), ch, KafkaClients("unused:9092"))
        row = ("prj_race", "", "", "", "", "exec-1")  # (project ... execution) as the sink keys
        first, second = (Batch(executions=[row], origins={"executions": [0]}) for _ in "ab")
        await sink._deduplicate(first)
        assert first.executions == [row] and sink.pending_keys == {("prj_race", "exec-1")}
        ch.commit = lambda: sink.pending_keys.difference_update(first.keys)
        await sink._deduplicate(second)
        assert second.executions == []  # exec-1 is first's: not stored twice
    finally:
        ch.close()


def _stored(project: str, execution_id: str, n: int) -> tuple[Any, ...]:
    """An `executions` row as the sink writes it (EXECUTION_COLUMNS order)."""
    at = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    return (
        project, time.time_ns() // 1000 + n, 0, n, f"log_{n}", execution_id, "wf", "Flow", "",
        "", "api", "info", "success", at, at, 1, 0.0, "", [], "null", 0, 0, 30,
    )  # fmt: skip


async def test_the_stored_key_lookup_finds_exactly_the_stored_pairs(tmp_path: Path) -> None:
    """On chDB: ids that need escaping, one stored in another project only, thousands of
    candidates, and an id with a NUL (bound instead of inlined) all answer exactly."""
    from services.logsink.inserts import existing_inline, stored_keys
    from services.logsink.rows import EXECUTION_COLUMNS

    ch = ClickHouse(f"chdb://{tmp_path / 'ch'}")
    try:
        await ch.migrate()
        awkward = ["a'b", "c\\d", "e\\'f", "new\nline", "tab\t", "ünï", "x" * 256, "\\0"]
        awkward += ["{p:String}", "%s"]  # nothing in a literal is taken for a parameter
        stored = [("prj_a", i) for i in awkward] + [("prj_b", "only-in-b")]
        rows = [_stored(p, i, n) for n, (p, i) in enumerate(stored)]
        await ch.insert("executions", rows, EXECUTION_COLUMNS)
        candidates = [("prj_a", i) for i in awkward] + [("prj_a", "only-in-b")]
        candidates += [("prj_a", f"fresh-{n}") for n in range(5000)]
        batch = Batch(executions=[("prj_a", "", "", "", "", i) for _, i in candidates])
        assert existing_inline(["prj_a"], [i for _, i in candidates]) is not None
        assert await stored_keys(ch, batch) == {("prj_a", i) for i in awkward}
        with_nul = Batch(executions=[("prj_a", "", "", "", "", i) for i in ("a\0b", "a'b")])
        assert await stored_keys(ch, with_nul) == {("prj_a", "a'b")}  # through bound values
    finally:
        ch.close()
