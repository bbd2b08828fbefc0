"""Endpoint health: how each subscription's deliveries have been ending (README "Endpoint health").

ClickHouse reduces the delivery log to one `Summary` per subscription in one query (a delivery's
outcome is its latest round's last attempt; deliveries still retrying have not ended and do not
count); the pure functions below turn a summary into the `health` the API shows and decide
whether the subscription is to be disabled automatically.
"""

from typing import Any, NamedTuple

from schemas.notifications import EndpointHealth, HealthStatus
from services.api.logs import epoch_ms
from services.common.clickhouse import ClickHouse
from services.common.clock import iso_ms
from services.common.config import QueryLimits

DAY_MS = 24 * 3600 * 1000
MIN_FAILURES_TO_DISABLE = 10

# Innermost: each delivery's outcome and end; middle: the subscription's last success beside
# every ended delivery (a window, so the streak after it is counted in the same pass); outer:
# one row per subscription. No success or failure reads as the epoch (ClickHouse's default).
_SUMMARIES = """
SELECT subscription_id,
       argMax(outcome, ended_at) AS latest,
       maxIf(ended_at, outcome = 'delivered') AS last_success,
       maxIf(ended_at, outcome = 'failed') AS last_failure,
       minIf(ended_at, outcome = 'failed' AND ended_at > success_at) AS failing_since,
       countIf(outcome = 'failed' AND ended_at > success_at) AS failed_streak,
       countIf(outcome = 'delivered' AND ended_at >= day_ago) AS delivered_24h,
       countIf(outcome = 'failed' AND ended_at >= day_ago) AS failed_24h
FROM (
    SELECT subscription_id, outcome, ended_at,
           fromUnixTimestamp64Milli({day_ago:Int64}, 'UTC') AS day_ago,
           max(if(outcome = 'delivered', ended_at, toDateTime64(0, 3, 'UTC')))
               OVER (PARTITION BY subscription_id) AS success_at
    FROM (
        SELECT subscription_id, delivery_id,
               argMax(outcome, (round, attempt)) AS outcome,
               argMax(attempted_at, (round, attempt)) AS ended_at
        FROM delivery_attempts FINAL
        WHERE project_id IN {projects:Array(String)}
          AND subscription_id IN {subscriptions:Array(String)}
        GROUP BY subscription_id, delivery_id
        HAVING outcome != 'retrying'
    )
)
GROUP BY subscription_id
"""


class Summary(NamedTuple):
    """A subscription's ended deliveries, reduced: a row of `_SUMMARIES` (times in ms, 0 = none)."""

    subscription_id: str
    latest: str
    last_success_ms: int
    last_failure_ms: int
    failing_since_ms: int
    failed_streak: int  # failed deliveries that ended after the last success
    delivered_24h: int
    failed_24h: int


def summary_of(row: tuple[Any, ...]) -> Summary:
    """A `_SUMMARIES` row as a Summary."""
    sid, latest, success, failure, since, streak, delivered, failed = row
    return Summary(
        sid,
        latest,
        epoch_ms(success),
        epoch_ms(failure),
        epoch_ms(since),
        int(streak),
        int(delivered),
        int(failed),
    )


def _iso(ms: int) -> str | None:
    return iso_ms(ms) if ms > 0 else None


def health_of(summary: Summary | None, disabled: bool) -> EndpointHealth:
    """The health the API shows: `disabled` first, then whether the latest ended delivery failed."""
    if summary is None:
        return EndpointHealth(status="disabled" if disabled else "healthy")
    ended_24h = summary.delivered_24h + summary.failed_24h
    failing = summary.latest == "failed"
    status: HealthStatus = "disabled" if disabled else "failing" if failing else "healthy"
    return EndpointHealth(
        status=status,
        failingSince=_iso(summary.failing_since_ms) if failing else None,
        lastSuccessAt=_iso(summary.last_success_ms),
        lastFailureAt=_iso(summary.last_failure_ms),
        successRate24h=round(summary.delivered_24h / ended_24h, 4) if ended_24h else None,
    )


def should_disable(summary: Summary | None, now_ms: int, hours: float) -> bool:
    """Whether deliveries have ended only in failure for `hours` (at least 10 of them, no
    success in between): the oldest failure after the last success ended `hours` ago or more."""
    return (
        summary is not None
        and summary.latest == "failed"
        and summary.failed_streak >= MIN_FAILURES_TO_DISABLE
        and 0 < summary.failing_since_ms <= now_ms - hours * 3600 * 1000
    )


def disabled_reason(summary: Summary, now_ms: int) -> str:
    """The sentence an automatically disabled subscription shows."""
    return (
        f"Disabled automatically at {iso_ms(now_ms)}: its last {summary.failed_streak} "
        f"deliveries all failed, the first at {iso_ms(summary.failing_since_ms)}, with no "
        "success since. Fix the receiver, set active to true, then recover the failed deliveries."
    )


async def summaries(
    ch: ClickHouse,
    pairs: list[tuple[str, str]],
    now_ms: int,
    limits: QueryLimits | None = None,
) -> dict[str, Summary]:
    """The summaries of (project id, subscription id) pairs, by subscription id (those with no
    ended delivery are missing)."""
    if not pairs:
        return {}
    params = {
        "projects": sorted({p for p, _ in pairs}),
        "subscriptions": [s for _, s in pairs],
        "day_ago": now_ms - DAY_MS,
    }
    rows = await ch.rows(_SUMMARIES, params, limits=limits, narrow="ask for fewer subscriptions")
    found = (summary_of(row) for row in rows)
    return {s.subscription_id: s for s in found}
