"""Execution events (contract section 4) and the records that carry them on Kafka."""

from datetime import datetime
from typing import Annotated, Any, Literal

from msgspec import Meta, Raw, Struct

Id = Annotated[str, Meta(min_length=1, max_length=256)]
Text = Annotated[str, Meta(max_length=1000)]
LongText = Annotated[str, Meta(max_length=10_000)]
Trigger = Annotated[str, Meta(min_length=1, max_length=64)]
Money = Annotated[float, Meta(ge=0)]
Count = Annotated[int, Meta(ge=0)]
AwareDatetime = Annotated[datetime, Meta(tz=True)]


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
    models: dict[Annotated[str, Meta(min_length=1, max_length=200)], ModelCost] | None = None


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
    workflowName: Text | None = None
    folderId: Id | None = None


class CompletedFacts(Struct, frozen=True):
    """The fields of a completed execution besides its blobs (the ingest screen shares them)."""

    executionId: Id
    workflowId: Id
    trigger: Trigger
    level: Literal["info", "error"]
    startedAt: AwareDatetime
    endedAt: AwareDatetime
    workflowName: Text | None = None
    workflowDescription: LongText | None = None
    folderId: Id | None = None
    status: Literal["success", "error", "cancelled"] | None = None
    totalDurationMs: Count | None = None
    cost: Cost | None = None


class ExecutionCompleted(
    CompletedFacts, frozen=True, tag="workflow.execution.completed", tag_field="type"
):
    """A runtime finished an execution, successfully or not."""

    files: list[Any] | None = None
    finalOutput: Any = None
    traceSpans: list[Any] | None = None
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
