"""Alert rules (contract section 6): a subscription's `alertConfig` and the alerts it raises.

Money and the figures of an alert are `Decimal`, decoded exactly from JSON numbers; encode
them with `msgspec.json.Encoder(decimal_format="number")` where the wire wants numbers.
"""

from decimal import Decimal
from typing import Annotated, Literal

from msgspec import Meta, Struct

Rule = Literal[
    "consecutive_failures",
    "failure_rate",
    "latency_threshold",
    "latency_spike",
    "cost_threshold",
    "no_activity",
    "error_count",
]
Hours = Annotated[float, Meta(ge=1 / 60, le=168)]
MIN_COST = Decimal("0.01")
MAX_COST = Decimal("1000")
DEFAULT_WINDOW_HOURS = 24.0
ERROR_COUNT_WINDOW_HOURS = 1.0


class AlertConfig(Struct, frozen=True, omit_defaults=True, forbid_unknown_fields=True):
    """Which rule a subscription evaluates and its bounds; absent fields take the defaults.

    `windowHours` left out means 24 h, except for error_count whose default is one hour
    ("10 per hour").
    """

    rule: Rule
    consecutiveFailures: Annotated[int, Meta(ge=1, le=100)] = 3
    failureRatePercent: Annotated[int, Meta(ge=1, le=100)] = 50
    windowHours: Hours | None = None
    durationThresholdMs: Annotated[int, Meta(ge=1000, le=3_600_000)] = 30_000
    latencySpikePercent: Annotated[int, Meta(ge=10, le=1000)] = 100
    costThresholdDollars: Decimal = Decimal(1)
    inactivityHours: Hours = 24.0
    errorCountThreshold: Annotated[int, Meta(ge=1, le=1000)] = 10
    notifyOnResolve: bool = False

    def __post_init__(self) -> None:
        """Bound the cost threshold, which Meta cannot constrain on a Decimal."""
        cost = self.costThresholdDollars
        if not (cost.is_finite() and MIN_COST <= cost <= MAX_COST):
            raise ValueError("costThresholdDollars must be between 0.01 and 1000")


AlertKind = Literal["fired", "resolved"]
AlertState = Literal["firing", "resolved"]


class Alert(Struct, frozen=True, omit_defaults=True):
    """One event of an alert episode: a rule fired (first or repeat notification) for a
    workflow, or the fired condition resolved.

    `id` names the episode (every event of it shares it); `key` names this event's trigger, so
    that (id, kind, key) is unique per event. `notify`: whether a notification is due (False for
    a resolve the subscription did not ask for: recorded only). `firedAtMs`, `notificationCount`
    and `version` are the episode's figures after this event, for the alerts table.
    """

    id: str
    kind: AlertKind
    rule: Rule
    reason: str
    observed: Decimal
    threshold: Decimal
    notificationId: str
    workflowId: str
    atMs: int
    executionId: str | None = None
    silenced: bool = False  # muted by a silence: recorded, not delivered
    key: str = ""
    notify: bool = True
    firedAtMs: int = 0
    notificationCount: int = 0
    version: int = 0
    firstExecutionId: str | None = None
    lastNotifiedAtMs: int | None = None


class AlertEvent(Struct, frozen=True):
    """A record of the `alert-events` topic (key: the alert id): one event of an alert episode
    as the log sink stores it, whether or not a notification was sent for it.

    `version` grows with every event of the episode, so the latest one wins in the `alerts`
    table; `notified` says a notification was produced for this event (not silenced, and for a
    resolve, asked for). `executionId` is the execution that triggered the episode, if any.
    """

    v: int
    alertId: str
    projectId: str
    subscriptionId: str
    workflowId: str
    rule: Rule
    kind: AlertKind
    silenced: bool
    notified: bool
    reason: str
    observed: Decimal
    threshold: Decimal
    atMs: int
    firedAtMs: int
    notificationCount: int
    version: int
    executionId: str | None = None
    lastNotifiedAtMs: int | None = None


class AckRecord(Struct, frozen=True, tag="ack", tag_field="kind"):
    """An acknowledgement on the compacted `alert-acks` topic (key `<alert id>/<partition>`),
    broadcast to every partition like a silence; its resolve is still sent.

    It is also a marker on `executions` (same tag, `kind: "ack"`), written to every partition
    before the compacted records, like a silence's: `markerOffset` is then the offset of the
    marker on this record's partition, and the engine sends no repeat notification of the alert
    for the execution records after it (None in the marker itself and in records written before
    markers existed: those apply to triggers at or after `acknowledgedAtMs`, by event time)."""

    v: int
    alertId: str
    projectId: str
    acknowledgedAtMs: int
    acknowledgedBy: str = ""
    markerOffset: int | None = None


class AlertView(Struct, frozen=True):
    """An alert as `GET /api/v1/alerts` shows it (contract section 6, v1.1)."""

    id: str
    subscriptionId: str
    workflowId: str
    rule: Rule
    state: AlertState
    acknowledged: bool
    silenced: bool
    reason: str
    observed: int | float
    threshold: int | float
    firedAt: str
    lastNotifiedAt: str | None
    resolvedAt: str | None
    notificationCount: int
    executionId: str | None = None
    acknowledgedAt: str | None = None
    acknowledgedBy: str | None = None
