"""A plan's limits as bodies show them: execution rate limits and month-to-date usage.

The logs API reports each execution bucket with its current state (`BucketState`); a delivery
payload carries the plan's figures only (`BucketLimit`). Both are a `RateLimits` of their kind.
"""

from typing import Generic, TypeVar

from msgspec import Struct


class BucketLimit(Struct, frozen=True):
    """One execution bucket of the plan: its refill per minute and its burst."""

    requestsPerMinute: int
    maxBurst: int


class BucketState(BucketLimit, frozen=True):
    """An execution bucket as the `limits` block reports it."""

    remaining: int
    resetAt: str


B = TypeVar("B", bound=BucketLimit)


class RateLimits(Struct, Generic[B], frozen=True, rename={"async_": "async"}):
    """The plan's sync and async execution buckets (the contract's `workflowExecutionRateLimit`)."""

    sync: B
    async_: B


class Usage(Struct, frozen=True):
    """Month-to-date cost against the plan's limit."""

    currentPeriodCost: float
    limit: float
    plan: str
    isExceeded: bool
