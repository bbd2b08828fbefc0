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


class Alert(Struct, frozen=True, omit_defaults=True):
    """One alert notification: a rule fired for a workflow, or a fired condition resolved."""

    id: str
    kind: Literal["fired", "resolved"]
    rule: Rule
    reason: str
    observed: Decimal
    threshold: Decimal
    notificationId: str
    workflowId: str
    atMs: int
    executionId: str | None = None
    silenced: bool = False  # muted by a silence: recorded, not delivered
