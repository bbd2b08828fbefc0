"""The buckets of the stats API (pure): the window of a range, and query rows -> filled answers.

A range is a fixed number of buckets aligned to UTC (epoch multiples of the bucket length), the
last one holding `now` and so partial. Every bucket is in the answer, zeros where nothing
completed; a workflow's health strip has the error rate of each of the last `HEALTH_BUCKETS`
buckets, `None` where it did not run.
"""

import math
from datetime import UTC, datetime
from typing import NamedTuple

from msgspec import Struct

from schemas.stats import StatsBucket, StatsRange, StatsTotals, WorkflowStats
from services.common.clock import iso_ms, to_ms

# range -> (bucket length in seconds, number of buckets)
RANGES: dict[StatsRange, tuple[int, int]] = {
    "24h": (3600, 24),
    "7d": (6 * 3600, 28),
    "30d": (86400, 30),
}
HEALTH_BUCKETS = 24


class Window(NamedTuple):
    """The buckets of one answer: their length and their starts (epoch seconds, oldest first)."""

    bucket_s: int
    starts: tuple[int, ...]

    @property
    def from_s(self) -> int:
        """Where the first bucket starts (inclusive)."""
        return self.starts[0]

    @property
    def until_s(self) -> int:
        """Where the last bucket ends (exclusive)."""
        return self.starts[-1] + self.bucket_s


class BucketRow(Struct, frozen=True):
    """A row of the series query: one bucket (`start`), or the whole range when `whole`."""

    whole: bool
    start: int
    executions: int
    errors: int
    quantiles: list[float]  # p50, p95 of total_duration_ms; NaN without executions
    cost_usd: float


class WorkflowRow(Struct, frozen=True):
    """A row of the workflows query: a workflow's range, then its buckets as parallel arrays."""

    workflow_id: str
    executions: int
    errors: int
    last_ended_at: datetime
    bucket_starts: list[int]
    bucket_executions: list[int]
    bucket_errors: list[int]


def window(range_name: StatsRange, now_s: int) -> Window:
    """The buckets of `range_name` ending with the one that holds `now_s`."""
    bucket_s, count = RANGES[range_name]
    last = now_s // bucket_s * bucket_s
    return Window(bucket_s, tuple(last - bucket_s * back for back in range(count - 1, -1, -1)))


def error_rate(errors: int, executions: int) -> float:
    """Errors per execution, rounded to 4 places; 0 without executions."""
    return round(errors / executions, 4) if executions else 0.0


def _ms(value: float) -> int:
    return round(value) if math.isfinite(value) else 0


def _epoch_ms(moment: datetime) -> int:
    """ClickHouse's DateTime64 values may come back naive: they are UTC."""
    return to_ms(moment if moment.tzinfo else moment.replace(tzinfo=UTC))


def _cost(value: float) -> float:
    return round(value, 9) if math.isfinite(value) else 0.0


def _bucket(start_s: int, row: BucketRow | None) -> StatsBucket:
    if row is None or not row.executions:
        return StatsBucket(
            start=iso_ms(start_s * 1000), executions=0, errors=0, p50DurationMs=0,
            p95DurationMs=0, costUsd=0.0,
        )  # fmt: skip
    p50, p95 = row.quantiles
    return StatsBucket(
        start=iso_ms(start_s * 1000), executions=row.executions, errors=row.errors,
        p50DurationMs=_ms(p50), p95DurationMs=_ms(p95), costUsd=_cost(row.cost_usd),
    )  # fmt: skip


def series(win: Window, rows: list[BucketRow]) -> list[StatsBucket]:
    """Every bucket of the window in order, zeros where no row is; rows outside it are left out."""
    found = {row.start: row for row in rows if not row.whole}
    return [_bucket(start, found.get(start)) for start in win.starts]


def totals(rows: list[BucketRow]) -> StatsTotals:
    """The whole range's figures from its row (zeros when there is none)."""
    whole = next((row for row in rows if row.whole), None)
    bucket = _bucket(0, whole)
    return StatsTotals(
        executions=bucket.executions, errors=bucket.errors,
        errorRate=error_rate(bucket.errors, bucket.executions), p50DurationMs=bucket.p50DurationMs,
        p95DurationMs=bucket.p95DurationMs, costUsd=bucket.costUsd,
    )  # fmt: skip


def health(win: Window, row: WorkflowRow) -> list[float | None]:
    """Error rates of the window's last `HEALTH_BUCKETS` buckets, None where it did not run."""
    counts = zip(row.bucket_executions, row.bucket_errors, strict=True)
    runs = dict(zip(row.bucket_starts, counts, strict=True))
    strip: list[float | None] = []
    for start in win.starts[-HEALTH_BUCKETS:]:
        executions, errors = runs.get(start, (0, 0))
        strip.append(error_rate(errors, executions) if executions else None)
    return strip


def workflow_stats(win: Window, row: WorkflowRow) -> WorkflowStats:
    """A workflow of the answer, with its health strip."""
    return WorkflowStats(
        workflowId=row.workflow_id, executions=row.executions, errors=row.errors,
        errorRate=error_rate(row.errors, row.executions),
        lastExecutionAt=iso_ms(_epoch_ms(row.last_ended_at)) if row.executions else None,
        health=health(win, row),
    )  # fmt: skip
