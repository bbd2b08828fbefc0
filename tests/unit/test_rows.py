"""Records to rows, batch bookkeeping and the partition clock."""

from datetime import UTC, datetime

import msgspec
from aiokafka.structs import TopicPartition

from schemas.events import Cost, ExecutionCompleted, ExecutionRecord, ExecutionStarted, ModelCost
from services.logsink import rows
from services.logsink.batch import Batch, drop_duplicates
from services.logsink.sink import PartitionClock

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def completed(**overrides: object) -> ExecutionCompleted:
    fields: dict[str, object] = {
        "executionId": "e1", "workflowId": "w1", "trigger": "api", "level": "info",
        "startedAt": T0, "endedAt": T0.replace(second=2, microsecond=500_000),
    }  # fmt: skip
    return ExecutionCompleted(**{**fields, **overrides})  # type: ignore[arg-type]


def record(event: ExecutionCompleted | ExecutionStarted) -> ExecutionRecord:
    return ExecutionRecord(v=1, projectId="prj_a", receivedAtMs=0, retentionDays=7, event=event)


def test_duration_is_derived_when_absent_and_kept_when_given() -> None:
    assert rows.duration_ms(completed()) == 2500
    assert rows.duration_ms(completed(totalDurationMs=7)) == 7


def test_execution_row_maps_every_column() -> None:
    cost = Cost(total=0.5, models={"b": ModelCost(total=0.2), "a": ModelCost(total=0.3)})
    event = completed(
        cost=cost, level="error", files=[{"name": "f"}], traceSpans=[1], finalOutput=0
    )
    row = dict(
        zip(
            rows.EXECUTION_COLUMNS, rows.execution_row(record(event), event, 99, 3, 42), strict=True
        )
    )
    assert row["project_id"] == "prj_a" and row["ingest_ts"] == 99
    assert (row["partition"], row["offset"]) == (3, 42)
    assert row["status"] == "error"
    assert row["models"] == ["a", "b"]
    assert row["cost_total"] == 0.5
    assert msgspec.json.decode(row["cost_json"]) == msgspec.to_builtins(cost)
    assert row["files"] == '[{"name":"f"}]'
    assert (row["has_trace_spans"], row["has_final_output"]) == (1, 1)
    assert row["total_duration_ms"] == 2500 and row["retention_days"] == 7


def test_log_ids_are_stable_per_project_and_execution() -> None:
    assert rows.log_id_for("p", "e") == rows.log_id_for("p", "e")
    assert rows.log_id_for("p", "e") != rows.log_id_for("q", "e")
    assert rows.log_id_for("p", "e").startswith("log_")


def test_clamp_makes_ingest_time_strictly_increasing() -> None:
    clock = PartitionClock()
    stamps = [clock.stamp(0, ts) for ts in (100, 100, 50, 200)]
    assert stamps == [100, 101, 102, 200]
    clock.advance(0, 1_000)
    assert clock.stamp(0, 150) == 1_001  # never below a published watermark
    assert clock.stamp(1, 5) == 5


def test_batch_tracks_offsets_and_tokens() -> None:
    batch = Batch()
    tp = TopicPartition("executions", 2)
    for offset in (10, 11, 12):
        batch.note(tp, offset, ingest_ts=offset * 10, size=5)
    assert batch.next_offsets[tp] == 13 and batch.first_offsets[tp] == 10
    assert batch.max_ts == {2: 120} and batch.nbytes == 15
    assert batch.token("executions") == batch.token("executions")
    assert batch.token("executions") != batch.token("execution_payloads")
    assert batch.due(now=0.0, max_rows=3, max_bytes=10**9, max_age_s=100)
    assert not Batch().due(now=100.0, max_rows=1, max_bytes=1, max_age_s=0)


def test_duplicates_are_dropped_within_and_across_batches() -> None:
    data = [
        ("p", 0, 0, 0, 0, "e1"),
        ("p", 0, 0, 0, 0, "e2"),
        ("p", 0, 0, 0, 0, "e1"),
        ("q", 0, 0, 0, 0, "e3"),
    ]
    kept = drop_duplicates(data, known={("q", "e3")}, key_at=(0, 5))
    assert [r[5] for r in kept] == ["e1", "e2"]
