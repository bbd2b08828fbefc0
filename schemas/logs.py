"""Bodies of the logs, workflows and runs API (contract section 5)."""

from typing import Any, Literal

from msgspec import UNSET, Struct, UnsetType

from schemas.events import Cost
from schemas.limits import BucketState, RateLimits, Usage


class WorkflowRef(Struct, frozen=True):
    """The workflow of a log, in full details."""

    id: str
    name: str | None
    description: str | None


class ExecutionData(Struct, frozen=True, omit_defaults=True):
    """Large execution data, only when asked for."""

    traceSpans: Any = UNSET
    finalOutput: Any = UNSET


class LogItem(Struct, frozen=True, omit_defaults=True):
    """One completed execution as the logs API shows it."""

    id: str
    workflowId: str
    executionId: str
    level: str
    trigger: str
    startedAt: str
    endedAt: str
    totalDurationMs: int
    cost: Cost
    files: Any
    workflow: WorkflowRef | UnsetType = UNSET
    executionData: ExecutionData | UnsetType = UNSET


class Limits(Struct, frozen=True):
    """The `limits` block of the logs endpoints."""

    workflowExecutionRateLimit: RateLimits[BucketState]
    usage: Usage


class LogDetail(LogItem, frozen=True, kw_only=True):
    """`GET /api/v1/logs/{id}`: one log in full detail, with the limits inside."""

    limits: Limits


class ExecutionMetadata(Struct, frozen=True):
    """Timing and cost of an execution."""

    trigger: str
    startedAt: str
    endedAt: str
    totalDurationMs: int
    cost: Cost


class ExecutionView(Struct, frozen=True):
    """`GET /api/v1/logs/executions/{executionId}`."""

    executionId: str
    workflowId: str
    workflowState: Any
    executionMetadata: ExecutionMetadata


class Workflow(Struct, frozen=True):
    """A workflow seen in events."""

    id: str
    name: str | None
    description: str | None
    folderId: str | None
    lastExecutionAt: str | None
    executionCount: int


RunStatus = Literal["running", "success", "error", "cancelled"]


class Run(Struct, frozen=True, omit_defaults=True):
    """An execution as a run: running until its completion arrives."""

    executionId: str
    workflowId: str
    workflowName: str | None
    status: RunStatus
    trigger: str
    startedAt: str
    mode: str | None = None
    endedAt: str | None = None
    totalDurationMs: int | None = None


class CancelAccepted(Struct, frozen=True):
    """A cancellation was put on the commands topic."""

    executionId: str
    status: Literal["cancel_requested"]
