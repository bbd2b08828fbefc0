"""Pure mapping from topic records to ClickHouse rows (no I/O here).

The sink reads events through a storage view in which large fields stay raw JSON: trace spans,
final output, workflow state, files and cost are written as the client sent them, never parsed
and re-serialised. Rows are JSON arrays for `JSONCompactEachRow`, parsed by ClickHouse itself.
"""

import hashlib
from datetime import datetime
from typing import Any

import msgspec
from msgspec import Raw, Struct

from schemas.events import ExecutionRecord

EXECUTION_COLUMNS = (
    "project_id", "ingest_ts", "partition", "offset", "log_id", "execution_id", "workflow_id",
    "workflow_name", "workflow_description", "folder_id", "trigger", "level", "status",
    "started_at", "ended_at", "total_duration_ms", "cost_total", "cost_json", "models", "files",
    "has_trace_spans", "has_final_output", "retention_days",
)  # fmt: skip
PAYLOAD_COLUMNS = (
    "project_id", "execution_id", "ingest_ts", "trace_spans", "final_output", "workflow_state",
    "retention_days",
)  # fmt: skip
STARTED_COLUMNS = (
    "project_id", "execution_id", "workflow_id", "workflow_name", "folder_id", "trigger", "mode",
    "started_at", "ingest_ts", "retention_days",
)  # fmt: skip

NULL = Raw(b"null")


class CostView(Struct):
    """What the sink needs from a cost: the total and the model names."""

    total: float = 0.0
    models: dict[str, Raw] | None = None


class Completed(Struct, tag="workflow.execution.completed", tag_field="type"):
    """A completed execution as stored: validated by the API, blobs kept raw."""

    executionId: str
    workflowId: str
    trigger: str
    level: str
    startedAt: datetime
    endedAt: datetime
    workflowName: str | None = None
    workflowDescription: str | None = None
    folderId: str | None = None
    status: str | None = None
    totalDurationMs: int | None = None
    cost: Raw = NULL
    files: Raw = NULL
    finalOutput: Raw = NULL
    traceSpans: Raw = NULL
    workflowState: Raw = NULL


class Started(Struct, tag="workflow.execution.started", tag_field="type"):
    """A started execution as stored."""

    executionId: str
    workflowId: str
    trigger: str
    mode: str
    startedAt: datetime
    workflowName: str | None = None
    folderId: str | None = None


StoredEvent = Completed | Started
_record = msgspec.json.Decoder(ExecutionRecord)
_event = msgspec.json.Decoder(StoredEvent)
_cost = msgspec.json.Decoder(CostView)
_row = msgspec.json.Encoder()


def decode_record(value: bytes) -> tuple[ExecutionRecord, list[StoredEvent]]:
    """Decode a topic record and its events; raises msgspec errors for anything malformed."""
    record = _record.decode(value)
    return record, [_event.decode(raw) for raw in record.events]


def log_id_for(project_id: str, execution_id: str) -> str:
    """The log id of an execution: deterministic, so a resent execution keeps its id."""
    digest = hashlib.blake2b(f"{project_id}\0{execution_id}".encode(), digest_size=12)
    return "log_" + digest.hexdigest()


def duration_ms(event: Completed) -> int:
    """The reported duration, else the difference of the two times (never negative)."""
    if event.totalDurationMs is not None:
        return event.totalDurationMs
    return max(0, round((event.endedAt - event.startedAt).total_seconds() * 1000))


def blob(raw: Raw) -> Any:
    """A raw JSON value for a String column: objects and arrays are stored as their text.

    ClickHouse stores a JSON object, array, number or boolean given for a String column as its
    text, but a JSON string as its unquoted content; strings are therefore passed as their JSON
    text (quotes included) so that what is stored is always valid JSON. null stores ''.
    """
    if _is(raw, b"null"):
        return None
    return bytes(raw).decode() if memoryview(raw)[:1] == memoryview(b'"') else raw


def _is(raw: Raw, literal: bytes) -> bool:
    """Whether a raw value is exactly `literal`, without copying a large blob."""
    view = memoryview(raw)
    return view.nbytes == len(literal) and view == memoryview(literal)


def _cost_fields(raw: Raw) -> tuple[float, Any, list[str]]:
    if _is(raw, b"null"):
        return 0.0, None, []
    cost = _cost.decode(raw)
    return cost.total, blob(raw), sorted(cost.models) if cost.models else []


def execution_row(
    record: ExecutionRecord, event: Completed, ingest_ts: int, partition: int, offset: int
) -> tuple[Any, ...]:
    """The slim `executions` row of a completed execution."""
    total, cost_json, models = _cost_fields(event.cost)
    status = event.status or ("error" if event.level == "error" else "success")
    return (
        record.projectId, ingest_ts, partition, offset,
        log_id_for(record.projectId, event.executionId), event.executionId, event.workflowId,
        event.workflowName or "", event.workflowDescription or "", event.folderId or "",
        event.trigger, event.level, status, event.startedAt, event.endedAt, duration_ms(event),
        total, cost_json, models, blob(event.files),
        int(not (_is(event.traceSpans, b"null") or _is(event.traceSpans, b"[]"))),
        int(not _is(event.finalOutput, b"null")), record.retentionDays,
    )  # fmt: skip


def payload_row(record: ExecutionRecord, event: Completed, ingest_ts: int) -> tuple[Any, ...]:
    """The `execution_payloads` row: the big blobs, read only for full details."""
    return (
        record.projectId, event.executionId, ingest_ts, blob(event.traceSpans),
        blob(event.finalOutput), blob(event.workflowState), record.retentionDays,
    )  # fmt: skip


def started_row(record: ExecutionRecord, event: Started, ingest_ts: int) -> tuple[Any, ...]:
    """The `executions_started` row of a started execution (a run until it completes)."""
    return (
        record.projectId, event.executionId, event.workflowId, event.workflowName or "",
        event.folderId or "", event.trigger, event.mode, event.startedAt, ingest_ts,
        record.retentionDays,
    )  # fmt: skip


def encode_rows(rows: list[tuple[Any, ...]]) -> bytes:
    """Rows as `JSONCompactEachRow` input."""
    return b"\n".join(map(_row.encode, rows))


def clamp_ingest_ts(broker_ts_us: int, last_ts_us: int) -> int:
    """The broker timestamp made strictly increasing within a partition."""
    return max(broker_ts_us, last_ts_us + 1)
