"""Pure mapping from topic records to ClickHouse rows (no I/O here)."""

import base64
import hashlib
from typing import Any

import msgspec

from schemas.events import ExecutionCompleted, ExecutionRecord, ExecutionStarted

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

_json = msgspec.json.Encoder()


def log_id_for(project_id: str, execution_id: str) -> str:
    """The log id of an execution: deterministic, so a resent execution keeps its id."""
    digest = hashlib.blake2b(f"{project_id}\0{execution_id}".encode(), digest_size=15).digest()
    return "log_" + base64.b32encode(digest).decode().lower()


def duration_ms(event: ExecutionCompleted) -> int:
    """The reported duration, else the difference of the two times (never negative)."""
    if event.totalDurationMs is not None:
        return event.totalDurationMs
    return max(0, round((event.endedAt - event.startedAt).total_seconds() * 1000))


def _json_or_empty(value: Any) -> str:
    return "" if value is None else _json.encode(value).decode()


def execution_row(
    record: ExecutionRecord, event: ExecutionCompleted, ingest_ts: int, partition: int, offset: int
) -> tuple[Any, ...]:
    """The slim `executions` row of a completed execution."""
    cost = event.cost
    return (
        record.projectId,
        ingest_ts,
        partition,
        offset,
        log_id_for(record.projectId, event.executionId),
        event.executionId,
        event.workflowId,
        event.workflowName or "",
        event.workflowDescription or "",
        event.folderId or "",
        event.trigger,
        event.level,
        event.status or _status(event),
        event.startedAt,
        event.endedAt,
        duration_ms(event),
        cost.total if cost else 0.0,
        _json_or_empty(cost),
        sorted(cost.models) if cost and cost.models else [],
        _json.encode(event.files).decode(),
        int(bool(event.traceSpans)),
        int(event.finalOutput is not None),
        record.retentionDays,
    )


def _status(event: ExecutionCompleted) -> str:
    return "error" if event.level == "error" else "success"


def payload_row(
    record: ExecutionRecord, event: ExecutionCompleted, ingest_ts: int
) -> tuple[Any, ...]:
    """The `execution_payloads` row: the big blobs, read only for full details."""
    return (
        record.projectId,
        event.executionId,
        ingest_ts,
        _json_or_empty(event.traceSpans),
        _json_or_empty(event.finalOutput),
        _json_or_empty(event.workflowState),
        record.retentionDays,
    )


def started_row(
    record: ExecutionRecord, event: ExecutionStarted, ingest_ts: int
) -> tuple[Any, ...]:
    """The `executions_started` row of a started execution (a run until it completes)."""
    return (
        record.projectId,
        event.executionId,
        event.workflowId,
        event.workflowName or "",
        event.folderId or "",
        event.trigger,
        event.mode,
        event.startedAt,
        ingest_ts,
        record.retentionDays,
    )


def decode_record(value: bytes) -> ExecutionRecord:
    """Decode a topic record; raises msgspec errors for anything malformed."""
    return msgspec.json.decode(value, type=ExecutionRecord)


def clamp_ingest_ts(broker_ts_us: int, last_ts_us: int) -> int:
    """The broker timestamp made strictly increasing within a partition."""
    return max(broker_ts_us, last_ts_us + 1)
