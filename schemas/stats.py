"""Bodies of the stats API: executions over time, for the console's Overview and Workflow pages."""

from typing import Literal

from msgspec import Struct

StatsRange = Literal["24h", "7d", "30d"]


class StatsTotals(Struct, frozen=True):
    """Completed executions of the whole range."""

    executions: int
    errors: int
    errorRate: float
    p50DurationMs: int
    p95DurationMs: int
    costUsd: float


class StatsBucket(Struct, frozen=True):
    """Executions that completed within one bucket (zeros when none did)."""

    start: str
    executions: int
    errors: int
    p50DurationMs: int
    p95DurationMs: int
    costUsd: float


class WorkflowStats(Struct, frozen=True):
    """One workflow over the range, with the error rates of the last 24 buckets (null: no run)."""

    workflowId: str
    executions: int
    errors: int
    errorRate: float
    lastExecutionAt: str | None
    health: list[float | None]


class Stats(Struct, frozen=True):
    """`GET /api/v1/stats`: totals, a series of buckets and the busiest workflows."""

    range: StatsRange
    bucketSeconds: int
    totals: StatsTotals
    series: list[StatsBucket]
    workflows: list[WorkflowStats]
