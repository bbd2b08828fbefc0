"""Execution events (contract section 4) and the records that carry them on Kafka."""

from datetime import datetime
from typing import Annotated, Any, Literal

from msgspec import Meta, Raw, Struct

from schemas.bounds import (
    MAX_FILES,
    MAX_MODELS,
    MAX_TRACE_SPANS,
    Description,
    DurationMs,
    Id,
    Money,
    Name,
    field_error,
    time_error,
)
from schemas.bounds import TokenCount as Count

Trigger = Annotated[str, Meta(min_length=1, max_length=64)]
AwareDatetime = Annotated[datetime, Meta(tz=True)]


def _check_times(started: datetime, ended: datetime | None = None) -> None:
    """Both times within the accepted range, and an end no earlier than its start."""
    for field, moment in (("startedAt", started), ("endedAt", ended)):
        if moment is not None and (problem := time_error(moment)):
            raise field_error(field, problem)
    if ended is not None and ended < started:
        raise field_error("endedAt", "Must not be before startedAt.")


class Tokens(Struct, frozen=True, omit_defaults=True):
    """Token counts of an execution or a model."""

    prompt: Count = 0
    completion: Count = 0
    total: Count = 0


class ModelCost(Struct, frozen=True, omit_defaults=True):
    """Cost of one model within an execution."""

    input: Money = 0
    output: Money = 0
    total: Money = 0
    tokens: Tokens | None = None


class Cost(Struct, frozen=True, omit_defaults=True):
    """What an execution cost, in USD."""

    total: Money
    input: Money | None = None
    output: Money | None = None
    tokens: Tokens | None = None
    models: Annotated[dict[Name, ModelCost], Meta(max_length=MAX_MODELS)] | None = None


class WorkflowState(Struct, frozen=True):
    """The workflow's graph at execution time, stored as given."""

    blocks: Any = None
    edges: Any = None
    loops: Any = None
    parallels: Any = None


class ExecutionStarted(Struct, frozen=True, tag="workflow.execution.started", tag_field="type"):
    """A runtime started an execution."""

    executionId: Id
    workflowId: Id
    trigger: Trigger
    mode: Literal["sync", "async"]
    startedAt: AwareDatetime
    workflowName: Name | None = None
    folderId: Id | None = None

    def __post_init__(self) -> None:
        """Bounds that `Meta` cannot express."""
        _check_times(self.startedAt)


class CompletedFacts(Struct, frozen=True):
    """The fields of a completed execution besides its blobs (the ingest screen shares them)."""

    executionId: Id
    workflowId: Id
    trigger: Trigger
    level: Literal["info", "error"]
    startedAt: AwareDatetime
    endedAt: AwareDatetime
    workflowName: Name | None = None
    workflowDescription: Description | None = None
    folderId: Id | None = None
    status: Literal["success", "error", "cancelled"] | None = None
    totalDurationMs: DurationMs | None = None
    cost: Cost | None = None

    def __post_init__(self) -> None:
        """Bounds that `Meta` cannot express (nesting depth is checked on the raw bytes)."""
        _check_times(self.startedAt, self.endedAt)


class ExecutionCompleted(
    CompletedFacts, frozen=True, tag="workflow.execution.completed", tag_field="type"
):
    """A runtime finished an execution, successfully or not."""

    files: Annotated[list[Any], Meta(max_length=MAX_FILES)] | None = None
    finalOutput: Any = None
    traceSpans: Annotated[list[Any], Meta(max_length=MAX_TRACE_SPANS)] | None = None
    workflowState: WorkflowState | None = None


Event = ExecutionStarted | ExecutionCompleted


class EventBatch(Struct, frozen=True):
    """`{"events": [...]}`: up to 1000 events in one request."""

    events: Annotated[list[Event], Meta(min_length=1, max_length=1000)]


class ExecutionRecord(Struct, frozen=True, tag="execution", tag_field="kind"):
    """What the API puts on the `executions` topic: accepted events of one workflow.

    One record per (request, workflow) keeps per-workflow order and partitioning while costing
    one Kafka record per group instead of one per event. Each item of `events` is an `Event`
    that the API validated, kept as the JSON the client sent.
    """

    v: int
    projectId: str
    receivedAtMs: int
    retentionDays: int
    events: list[Raw]
    plan: str = "free"


class CancelRequested(Struct, frozen=True, tag="workflow.run.cancel_requested", tag_field="type"):
    """A command on the `commands` topic: the runtime should stop this execution."""

    v: int
    projectId: str
    executionId: str
    workflowId: str
    requestedAtMs: int
    requestId: str


def topic_key(project_id: str, workflow_id: str) -> bytes:
    """Partition key: per-workflow order within a project, co-partitioned across topics."""
    return f"{project_id}/{workflow_id}".encode()
