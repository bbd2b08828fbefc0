"""Route: `/api/v1/stats`, completed executions over time (the console's Overview and Workflow
pages). Counted on completion time from `executions`; the buckets are in `statsbuckets`."""

import asyncio
from typing import Any

from schemas.stats import Stats, StatsRange
from services.api import statsbuckets
from services.api.routing import Call, Route, choice_param, text_param, text_param_doc
from services.api.statsbuckets import BucketRow, Window, WorkflowRow
from services.common.clock import now_ms
from services.common.errors import InvalidInput

# Rows are stored after their executions end, so one that ended in the window was ingested after
# it began: bounding `ingest_ts` (second in the sort key) reads the window's rows, not the whole
# retention. The margin keeps executions from runtimes whose clocks run ahead of the broker's.
INGEST_MARGIN_S = 3600
MAX_WORKFLOWS = 100
NARROW = "ask for a shorter range, or one workflowId"

_WHERE = """project_id = {project:String}
      AND ingest_ts >= {ingested_from_us:Int64}
      AND ended_at >= fromUnixTimestamp64Milli({from_ms:Int64})
      AND ended_at < fromUnixTimestamp64Milli({until_ms:Int64})"""
_ONE = "AND workflow_id = {workflow:String}"
_START = "toInt64(intDiv(toUnixTimestamp(ended_at), {bucket_s:UInt32}) * {bucket_s:UInt32})"
# One scan gives every bucket and the whole range (the grouping set `()`, whose `start` is 0).
_SERIES = f"""
SELECT toBool(grouping(start)) AS whole, start, count() AS executions,
       countIf(level = 'error') AS errors,
       quantiles(0.5, 0.95)(total_duration_ms) AS quantiles, sum(cost_total) AS cost_usd
FROM (
    SELECT {_START} AS start, level, total_duration_ms, cost_total
    FROM executions WHERE {_WHERE} {{only}}
)
GROUP BY GROUPING SETS ((start), ())
"""  # noqa: S608 - fixed fragments only
_WORKFLOWS = f"""
SELECT workflow_id, sum(n) AS executions, sum(e) AS errors, max(last) AS last_ended_at,
       groupArray(start) AS bucket_starts, groupArray(n) AS bucket_executions,
       groupArray(e) AS bucket_errors
FROM (
    SELECT workflow_id, {_START} AS start, count() AS n, countIf(level = 'error') AS e,
           max(ended_at) AS last
    FROM executions WHERE {_WHERE} {{only}}
    GROUP BY workflow_id, start
)
GROUP BY workflow_id ORDER BY executions DESC, workflow_id LIMIT {{limit:UInt32}}
"""  # noqa: S608 - fixed fragments only


def _range(call: Call) -> StatsRange:
    raw = call.query.get("range", "24h")
    if raw not in statsbuckets.RANGES:
        raise InvalidInput.field("range", f"Must be one of 24h, 7d, 30d; got {raw[:64]!r}.")
    return raw


def _params(call: Call, win: Window, workflow_id: str | None) -> dict[str, Any]:
    return {
        "project": call.principal.project_id,
        "ingested_from_us": (win.from_s - INGEST_MARGIN_S) * 1_000_000,
        "from_ms": win.from_s * 1000,
        "until_ms": win.until_s * 1000,
        "bucket_s": win.bucket_s,
        "workflow": workflow_id,
        "limit": MAX_WORKFLOWS,
    }


async def get_stats(call: Call) -> Stats:
    """Totals, every bucket of the range and the busiest workflows, for the caller's project."""
    range_name = _range(call)
    workflow_id = text_param(call.query, "workflowId")
    win = statsbuckets.window(range_name, now_ms(call.deps.clock) // 1000)
    params = _params(call, win, workflow_id)
    only = _ONE if workflow_id else ""
    ch, limits = call.deps.clickhouse, call.deps.settings.query_limits_for("stats")
    buckets, workflows = await asyncio.gather(
        ch.records(BucketRow, _SERIES.replace("{only}", only), params, limits, NARROW),
        ch.records(WorkflowRow, _WORKFLOWS.replace("{only}", only), params, limits, NARROW),
    )
    return Stats(
        range=range_name, bucketSeconds=win.bucket_s, totals=statsbuckets.totals(buckets),
        series=statsbuckets.series(win, buckets),
        workflows=[statsbuckets.workflow_stats(win, row) for row in workflows],
    )  # fmt: skip


ROUTES = [
    Route(
        "GET",
        "/api/v1/stats",
        get_stats,
        "Completed executions over time: totals, buckets and the busiest workflows",
        "stats",
        scope="logs:read",
        response=Stats,
        params=(
            choice_param("range", tuple(statsbuckets.RANGES), "default 24h"),
            text_param_doc("workflowId", "only this workflow"),
        ),
    ),
]
