"""Pure mapping from topic records to ClickHouse rows (no I/O here).

The sink reads events through a storage view in which large fields stay raw JSON: trace spans,
final output, workflow state, files and cost are written as the client sent them, never parsed
and re-serialised. Rows are JSON arrays for `JSONCompactEachRow`, parsed by ClickHouse itself.
Delivery attempts are read the same way: the delivered payload stays the text that was sent.
Alert events and acknowledgements become `alerts` and `alert_acks` rows as they are.
"""

from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

import msgspec
from msgspec import Raw, Struct

from schemas.alerts import AckRecord, AlertEvent
from schemas.deliveries import DeliveryAttempt, LogEntry
from schemas.events import ExecutionRecord
from services.common.clock import iso_ms
from services.common.ids import log_id_for

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
ATTEMPT_COLUMNS = (
    "project_id", "subscription_id", "delivery_id", "event_id", "event_type", "notification_type",
    "round", "attempt", "outcome", "attempted_at", "duration_ms", "target", "response_code",
    "response_body", "error", "next_attempt_at", "payload",
)  # fmt: skip
ALERT_COLUMNS = (
    "project_id", "id", "subscription_id", "workflow_id", "rule", "state", "silenced", "reason",
    "observed", "threshold", "execution_id", "fired_at", "last_notified_at", "resolved_at",
    "updated_at", "notification_count", "version",
)  # fmt: skip
ACK_COLUMNS = ("project_id", "alert_id", "acknowledged_at", "acknowledged_by")

NULL = Raw(b"null")
# ClickHouse stores an unsigned number too large for its column wrapped, without an error (a
# negative one it refuses, and the sink splits the insert to find it): the rows refuse it first.
UINT16, UINT64 = 2**16, 2**64
EMPTY_LIST = Raw(b"[]")
_QUOTE = memoryview(b'"')


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


class StoredRecord(Struct, tag="execution", tag_field="kind"):
    """An `ExecutionRecord` as stored: its events decoded in the same pass."""

    v: int
    projectId: str
    receivedAtMs: int
    retentionDays: int
    events: list[StoredEvent]
    plan: str = "free"


class RecordHead(Protocol):
    """What rows need from a record: its project and retention."""

    @property
    def projectId(self) -> str: ...

    @property
    def retentionDays(self) -> int: ...


_stored = msgspec.json.Decoder(StoredRecord)
_record = msgspec.json.Decoder(ExecutionRecord)
_event = msgspec.json.Decoder(StoredEvent)
_attempt = msgspec.json.Decoder(LogEntry)
_cost = msgspec.json.Decoder(CostView)
_alert_event = msgspec.json.Decoder(AlertEvent)
_ack = msgspec.json.Decoder(AckRecord)
UINT32 = 2**32
_row = msgspec.json.Encoder()


def decode_record(value: bytes) -> tuple[StoredRecord, list[StoredEvent]]:
    """Decode a topic record and its events; raises msgspec errors for anything malformed."""
    try:
        record = _stored.decode(value)
    except (msgspec.DecodeError, msgspec.ValidationError):
        # The record, then each event: the error names the field as the two-step decode did.
        for raw in _record.decode(value).events:
            _event.decode(raw)
        raise
    return record, record.events


Rows = list[tuple[Any, ...]]


def execution_rows(
    value: bytes, partition: int, offset: int, stamp: Callable[[int, int], int], broker_ts: int
) -> tuple[Rows, Rows, Rows, int]:
    """The `executions`, `execution_payloads` and `executions_started` rows of an `executions`
    record, and the ingest_ts of its last row (0 when it has none); `stamp(partition,
    broker_ts)` gives each row its ingest_ts. Anything it raises means the record cannot be
    stored, whatever the exception."""
    decoded, events = decode_record(value)
    fits("retentionDays", decoded.retentionDays, UINT16)
    executions: Rows = []
    payloads: Rows = []
    started: Rows = []
    ts = 0
    for event in events:  # each row its own ingest_ts: positions stay unique per partition
        ts = stamp(partition, broker_ts)
        if isinstance(event, Completed):
            executions.append(execution_row(decoded, event, ts, partition, offset))
            payloads.append(payload_row(decoded, event, ts))
        else:
            started.append(started_row(decoded, event, ts))
    return executions, payloads, started, ts


def fits(field: str, value: int | None, limit: int) -> None:
    """Raise unless `value` is below `limit` (the size of its unsigned column)."""
    if value is not None and value >= limit:
        raise ValueError(f"{field} {value} does not fit its column (at most {limit - 1})")


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
    if raw == NULL:
        return None
    return bytes(raw).decode() if memoryview(raw)[:1] == _QUOTE else raw


def _cost_fields(raw: Raw) -> tuple[float, Any, list[str]]:
    if raw == NULL:
        return 0.0, None, []
    cost = _cost.decode(raw)
    return cost.total, blob(raw), sorted(cost.models) if cost.models else []


def execution_row(
    record: RecordHead, event: Completed, ingest_ts: int, partition: int, offset: int
) -> tuple[Any, ...]:
    """The slim `executions` row of a completed execution."""
    total, cost_json, models = _cost_fields(event.cost)
    duration = duration_ms(event)
    if duration >= UINT64:
        fits("totalDurationMs", duration, UINT64)
    status = event.status or ("error" if event.level == "error" else "success")
    return (
        record.projectId, ingest_ts, partition, offset,
        log_id_for(record.projectId, event.executionId), event.executionId, event.workflowId,
        event.workflowName or "", event.workflowDescription or "", event.folderId or "",
        event.trigger, event.level, status, event.startedAt, event.endedAt, duration,
        total, cost_json, models, blob(event.files),
        int(event.traceSpans != NULL and event.traceSpans != EMPTY_LIST),
        int(event.finalOutput != NULL), record.retentionDays,
    )  # fmt: skip


def payload_row(record: RecordHead, event: Completed, ingest_ts: int) -> tuple[Any, ...]:
    """The `execution_payloads` row: the big blobs, read only for full details."""
    return (
        record.projectId, event.executionId, ingest_ts, blob(event.traceSpans),
        blob(event.finalOutput), blob(event.workflowState), record.retentionDays,
    )  # fmt: skip


def started_row(record: RecordHead, event: Started, ingest_ts: int) -> tuple[Any, ...]:
    """The `executions_started` row of a started execution (a run until it completes)."""
    return (
        record.projectId, event.executionId, event.workflowId, event.workflowName or "",
        event.folderId or "", event.trigger, event.mode, event.startedAt, ingest_ts,
        record.retentionDays,
    )  # fmt: skip


def attempt_row(value: bytes) -> tuple[Any, ...] | None:
    """The `delivery_attempts` row of a `delivery-log` record, None for the start of an attempt
    (only the dispatcher reads those); raises msgspec errors if malformed.

    The payload is passed as a JSON string so that ClickHouse stores exactly the text that was
    sent ('' when the attempt carries none), whatever JSON value it is.
    """
    a = _attempt.decode(value)
    if not isinstance(a, DeliveryAttempt):
        return None
    fits("round", a.round, 2**63)  # Int64; the other numbers are bounded by the schema
    payload = "" if a.payload == NULL else bytes(a.payload).decode(errors="replace")
    next_at = None if a.nextAttemptAtMs is None else iso_ms(a.nextAttemptAtMs)
    return (
        a.projectId, a.subscriptionId, a.deliveryId, a.eventId, a.eventType, a.notificationType,
        a.round, a.attempt, a.outcome, iso_ms(a.attemptedAtMs), a.durationMs, a.target,
        a.responseCode, a.responseBody, a.error, next_at, payload,
    )  # fmt: skip


def alert_row(value: bytes) -> tuple[Any, ...]:
    """The `alerts` row of an `alert-events` record: the alert as of this event (the highest
    `version` of an alert is its current state); raises msgspec errors if malformed."""
    e = _alert_event.decode(value)
    fits("version", e.version, UINT32)
    fits("notificationCount", e.notificationCount, UINT32)
    resolved = e.kind == "resolved"
    last = None if e.lastNotifiedAtMs is None else iso_ms(e.lastNotifiedAtMs)
    return (
        e.projectId, e.alertId, e.subscriptionId, e.workflowId, e.rule,
        "resolved" if resolved else "firing", int(e.silenced), e.reason, float(e.observed),
        float(e.threshold), e.executionId, iso_ms(e.firedAtMs), last,
        iso_ms(e.atMs) if resolved else None, iso_ms(e.atMs), e.notificationCount, e.version,
    )  # fmt: skip


def ack_row(value: bytes | None) -> tuple[Any, ...] | None:
    """The `alert_acks` row of an `alert-acks` record (None for a tombstone); raises msgspec
    errors if malformed. Broadcast to every partition, it arrives once per partition: the
    copies share the key and collapse."""
    if value is None:
        return None
    a = _ack.decode(value)
    return (a.projectId, a.alertId, iso_ms(a.acknowledgedAtMs), a.acknowledgedBy)


def encode_rows(rows: list[tuple[Any, ...]]) -> bytes:
    """Rows as `JSONCompactEachRow` input."""
    return b"\n".join(map(_row.encode, rows))


def clamp_ingest_ts(broker_ts_us: int, last_ts_us: int) -> int:
    """The broker timestamp made strictly increasing within a partition."""
    return max(broker_ts_us, last_ts_us + 1)
