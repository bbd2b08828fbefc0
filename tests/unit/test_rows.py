"""Records to rows, batch bookkeeping and the partition clock."""

from datetime import UTC, datetime

import msgspec
from aiokafka.structs import TopicPartition

from schemas.events import ExecutionRecord
from services.logsink import rows
from services.logsink.batch import Batch, drop_duplicates
from services.logsink.watermarks import PartitionClock
from tests.factories import completed, execution_record

ENDED = datetime(2026, 1, 1, 12, 0, 2, 500_000, tzinfo=UTC)


def stored(**fields: object) -> tuple[ExecutionRecord, rows.Completed]:
    sent = completed("e1", "w1", ended=ENDED, duration_ms=2500, cost=None) | fields
    decoded, (event,) = rows.decode_record(execution_record("prj_a", sent, retention_days=7))
    assert isinstance(event, rows.Completed)
    return decoded, event


def test_duration_is_derived_when_absent_and_kept_when_given() -> None:
    assert rows.duration_ms(stored()[1]) == 2500
    assert rows.duration_ms(stored(totalDurationMs=7)[1]) == 7


def test_execution_row_maps_every_column() -> None:
    cost = {"total": 0.5, "models": {"b": {"total": 0.2}, "a": {"total": 0.3}}}
    record, event = stored(
        cost=cost, level="error", files=[{"name": "f"}], traceSpans=[1], finalOutput=0
    )
    row = dict(
        zip(rows.EXECUTION_COLUMNS, rows.execution_row(record, event, 99, 3, 42), strict=True)
    )
    assert row["project_id"] == "prj_a" and row["ingest_ts"] == 99
    assert (row["partition"], row["offset"]) == (3, 42)
    assert row["status"] == "error"
    assert row["models"] == ["a", "b"]
    assert row["cost_total"] == 0.5
    assert msgspec.json.decode(bytes(row["cost_json"])) == cost
    assert bytes(row["files"]) == b'[{"name":"f"}]'
    assert (row["has_trace_spans"], row["has_final_output"]) == (1, 1)
    assert row["total_duration_ms"] == 2500 and row["retention_days"] == 7


def test_blobs_are_kept_as_sent_and_strings_stay_valid_json() -> None:
    record, event = stored(finalOutput="plain text", traceSpans=[{"a": 1}])
    _, _, _, spans, output, state, _ = rows.payload_row(record, event, 5)
    assert bytes(spans) == b'[{"a":1}]'
    assert output == '"plain text"'  # stored with its quotes: valid JSON when served raw
    assert state is None
    assert rows.encode_rows([("x", rows.blob(msgspec.Raw(b'{"k": [1]}')))]) == b'["x",{"k": [1]}]'


def test_missing_cost_stores_zero_and_no_models() -> None:
    record, event = stored()
    row = dict(zip(rows.EXECUTION_COLUMNS, rows.execution_row(record, event, 1, 0, 0), strict=True))
    assert (row["cost_total"], row["cost_json"], row["models"]) == (0.0, None, [])


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


def test_the_bound_is_over_published_watermarks_of_every_partition() -> None:
    clock = PartitionClock()
    clock.advance(0, 500)
    clock.advance(1, 700)
    assert clock.bound({0, 1}) is None  # advanced, not yet written to sink_watermarks
    clock.published.update({0: 500})
    assert clock.bound({0, 1}) is None and clock.bound({0}) == 500
    clock.published.update({1: 700})
    assert clock.bound({0, 1}) == 500 and clock.bound(set()) is None


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


def test_the_duplicate_lookup_inlines_escaped_ids_and_leaves_nul_to_binding() -> None:
    from services.logsink.inserts import existing_inline

    sql = existing_inline(["prj_a", "prj_'b"], ["a'b", "c\\d", "e"])
    assert sql is not None and sql.endswith(
        "IN ('prj_a','prj_\\'b') AND execution_id IN "
        "(SELECT arrayJoin(splitByChar('\\0', 'a\\'b\\0c\\\\d\\0e')))"
    )
    assert existing_inline(["prj_a"], ["a\0b"]) is None
    assert existing_inline(["prj_\0"], ["a"]) is None
