"""The delivery payload of contract section 6: the body every receiver gets.

The alert engine makes it for executions and alerts, the API for a test send and, from the body
first sent, for a redelivery; the dispatcher reads it from the record it delivers. A field its
maker left out (UNSET) stays out and a null stays null when the dispatcher encodes it again, so
a receiver gets the JSON that was made, field for field and in the same order.
"""

from typing import Any, Final, Literal

from msgspec import UNSET, Struct, UnsetType

from schemas.events import Cost
from schemas.limits import BucketLimit, RateLimits, Usage

EventType = Literal[
    "workflow.execution.completed", "workflow.alert.no_activity", "workflow.alert.resolved"
]
EXECUTION_COMPLETED: Final = "workflow.execution.completed"
ALERT_NO_ACTIVITY: Final = "workflow.alert.no_activity"
ALERT_RESOLVED: Final = "workflow.alert.resolved"


class AlertData(Struct, frozen=True):
    """The `alert` object of an alert delivery."""

    id: str
    rule: str
    reason: str
    observed: int | float
    threshold: int | float
    notificationId: str


class DeliveryData(Struct, frozen=True):
    """`data` of a delivery: the execution's fields (null when there is no execution), then
    what the subscription includes."""

    workflowId: str
    workflowName: str | UnsetType | None = UNSET
    executionId: str | UnsetType | None = UNSET
    status: str | UnsetType | None = UNSET
    level: str | UnsetType | None = UNSET
    trigger: str | UnsetType | None = UNSET
    startedAt: str | UnsetType | None = UNSET
    endedAt: str | UnsetType | None = UNSET
    totalDurationMs: int | UnsetType | None = UNSET
    cost: Cost | UnsetType | None = UNSET
    files: list[Any] | UnsetType | None = UNSET
    finalOutput: Any | UnsetType = UNSET
    traceSpans: list[Any] | UnsetType | None = UNSET
    rateLimits: RateLimits[BucketLimit] | UnsetType = UNSET
    usage: Usage | UnsetType = UNSET
    alert: AlertData | UnsetType = UNSET


class Links(Struct, frozen=True, omit_defaults=True):
    """Where the execution can be read back; empty for an alert without an execution."""

    log: str | None = None
    execution: str | None = None


class DeliveryPayload(Struct, frozen=True, kw_only=True):
    """The body a destination receives; `test` marks the sample of a test send."""

    id: str
    type: EventType
    timestamp: int
    test: bool | UnsetType = UNSET
    data: DeliveryData
    links: Links
