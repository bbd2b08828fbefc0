"""The limits block of a logs answer: execution buckets and month-to-date usage."""

import time
from datetime import UTC, datetime

from schemas.limits import BucketState, RateLimits, Usage
from schemas.logs import Limits
from services.api.events import execution_buckets
from services.api.routing import Call
from services.common.clock import iso_ms, now_ms
from services.common.controlplane import KeyRecord

_USAGE = (
    "SELECT sum(cost) FROM usage_monthly WHERE project_id = {project:String} "
    "AND month = toDate({month:String})"
)
_usage_cache: dict[tuple[str, str], tuple[float, float]] = {}
USAGE_CACHE_S = 5.0


async def _month_cost(call: Call, project_id: str) -> float:
    """Month-to-date cost, cached a few seconds per project (it is a display figure)."""
    month = datetime.fromtimestamp(now_ms(call.deps.clock) / 1000, tz=UTC).strftime("%Y-%m-01")
    cached = _usage_cache.get((project_id, month))
    if cached is not None and time.monotonic() - cached[0] < USAGE_CACHE_S:
        return cached[1]
    rows = await call.deps.clickhouse.rows(_USAGE, {"project": project_id, "month": month})
    [(total,)] = rows or [(None,)]
    spent = round(float(total or 0.0), 9)
    _usage_cache[(project_id, month)] = (time.monotonic(), spent)
    return spent


async def limits_block(call: Call, key: KeyRecord) -> Limits:
    """Execution buckets (without taking a token) and month-to-date usage."""
    states = {}
    for mode, bucket in execution_buckets(call, key.plan).items():
        decision = await call.deps.limiter.take(f"exec:{mode}:{key.project_id}", bucket, 0)
        states[mode] = BucketState(
            requestsPerMinute=int(bucket.per_minute), maxBurst=int(bucket.burst),
            remaining=decision.remaining, resetAt=iso_ms(int(decision.reset_at_s * 1000)),
        )  # fmt: skip
    spent = await _month_cost(call, key.project_id)
    limit = call.deps.settings.plan(key.plan).monthly_cost_limit_usd
    usage = Usage(currentPeriodCost=spent, limit=limit, plan=key.plan, isExceeded=spent >= limit)
    rates = RateLimits(sync=states["sync"], async_=states["async"])
    return Limits(workflowExecutionRateLimit=rates, usage=usage)
