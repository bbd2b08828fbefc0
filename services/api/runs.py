"""Routes: `/api/v1/runs`, `/api/v1/runs/{executionId}` and its cancellation."""

from typing import Any

from aiokafka.errors import KafkaError
from msgspec import Struct, json

from schemas import topics
from schemas.events import CancelRequested, topic_key
from schemas.logs import CancelAccepted, Run
from services.api.logs import epoch_ms
from services.api.routing import (
    CURSOR,
    Call,
    Page,
    Route,
    choice_param,
    int_param,
    limit_param,
    text_param,
    text_param_doc,
)
from services.common.clock import iso_ms, now_ms
from services.common.cursor import decode_cursor, encode_cursor
from services.common.errors import Conflict, InvalidCursor, InvalidInput, NotFound, Unavailable
from services.common.http import request_id_of

# Both branches yield: execution_id, workflow_id, workflow_name, status, trigger, mode,
# started_at, ended_at (or NULL), total_duration_ms (or NULL).
_RUNNING = """
SELECT execution_id, workflow_id, workflow_name, 'running' AS status, trigger, mode, started_at,
       CAST(NULL, 'Nullable(DateTime64(3, \\'UTC\\'))') AS ended_at,
       CAST(NULL, 'Nullable(UInt64)') AS duration
FROM executions_started FINAL
WHERE project_id = {project:String} {where}
  AND execution_id NOT IN (
      SELECT execution_id FROM executions WHERE project_id = {project:String}
      AND execution_id IN (SELECT execution_id FROM executions_started
                           WHERE project_id = {project:String} {where}))
"""
_COMPLETED = """
SELECT execution_id, workflow_id, workflow_name, status, trigger, '' AS mode, started_at,
       CAST(ended_at, 'Nullable(DateTime64(3, \\'UTC\\'))') AS ended_at,
       CAST(total_duration_ms, 'Nullable(UInt64)') AS duration
FROM executions WHERE project_id = {project:String} {where}
"""
_PAGE = """
SELECT * FROM ({body}) WHERE {after}
ORDER BY started_at DESC, execution_id DESC LIMIT {{limit:UInt32}}
"""


class RunsCursor(Struct, frozen=True):
    """Where a runs listing stopped: (started_at ms, execution id), newest first."""

    v: int
    h: str
    started: int
    id: str


def _run(row: tuple[Any, ...]) -> Run:
    execution_id, workflow_id, name, status, trigger, mode, started, ended, duration = row
    return Run(
        executionId=execution_id, workflowId=workflow_id, workflowName=name or None,
        status=status, trigger=trigger, startedAt=iso_ms(epoch_ms(started)), mode=mode or None,
        endedAt=iso_ms(epoch_ms(ended)) if ended is not None else None,
        totalDurationMs=int(duration) if duration is not None else None,
    )  # fmt: skip


def runs_sql(status: str | None, workflow_id: str | None, after: bool) -> str:
    """The runs page query for a status (None: both) from fixed fragments only."""
    where = "AND workflow_id = {workflow:String}" if workflow_id else ""
    parts = []
    if status in (None, "running"):
        parts.append(_RUNNING.replace("{where}", where))
    if status in (None, "completed"):
        parts.append(_COMPLETED.replace("{where}", where))
    condition = (
        "(started_at, execution_id) < (fromUnixTimestamp64Milli({as:Int64}), {aid:String})"
        if after
        else "1"
    )
    return _PAGE.format(body=" UNION ALL ".join(parts), after=condition)


async def list_runs(call: Call) -> Page:
    """Runs newest first, optionally only running or only completed."""
    project_id = call.principal.project_id
    status = call.query.get("status")
    if status not in (None, "running", "completed"):
        raise InvalidInput.field("status", "Must be running or completed.")
    workflow_id = text_param(call.query, "workflowId")
    limit = int_param(call.query, "limit", 100, 1, 1000)
    binding = json.encode([project_id, status, workflow_id]).hex()[:32]
    params: dict[str, Any] = {"project": project_id, "limit": limit + 1, "workflow": workflow_id}
    token = call.query.get("cursor")
    if token:
        cursor = decode_cursor(token, RunsCursor, call.deps.cursor_key)
        if cursor.h != binding:
            raise InvalidCursor("The cursor was issued for other filters or project.")
        params.update({"as": cursor.started, "aid": cursor.id})
    rows = await call.deps.clickhouse.rows(runs_sql(status, workflow_id, bool(token)), params)
    page, has_more = rows[:limit], len(rows) > limit
    next_cursor = None
    if has_more:
        last = RunsCursor(v=1, h=binding, started=epoch_ms(page[-1][6]), id=page[-1][0])
        next_cursor = encode_cursor(last, call.deps.cursor_key)
    return Page([_run(r) for r in page], next_cursor, has_more)


async def _find(call: Call, execution_id: str) -> Run | None:
    sql = "SELECT * FROM ({c} UNION ALL {r}) ORDER BY status = 'running' LIMIT 1".format(  # noqa: S608  # noqa: S608
        c=_COMPLETED.replace("{where}", "AND execution_id = {id:String}"),
        r=_RUNNING.replace("{where}", "AND execution_id = {id:String}"),
    )
    rows = await call.deps.clickhouse.rows(
        sql, {"project": call.principal.project_id, "id": execution_id}
    )
    return _run(rows[0]) if rows else None


async def get_run(call: Call) -> Run:
    """One run; another project's execution is 404."""
    run = await _find(call, call.path("executionId"))
    if run is None:
        raise NotFound(f"No run {call.path('executionId')} in this project.")
    return run


async def cancel_run(call: Call) -> CancelAccepted:
    """Ask the runtime to stop a running execution (a command on the `commands` topic)."""
    run = await get_run(call)
    if run.status != "running":
        raise Conflict(f"Run {run.executionId} already finished ({run.status}).")
    key = call.principal
    command = CancelRequested(
        v=1, projectId=key.project_id, executionId=run.executionId, workflowId=run.workflowId,
        requestedAtMs=now_ms(call.deps.clock), requestId=request_id_of(call.request),
    )  # fmt: skip
    try:
        await call.deps.producer.send_and_wait(
            topics.COMMANDS, json.encode(command), key=topic_key(key.project_id, run.workflowId)
        )
    except (KafkaError, OSError) as exc:
        raise Unavailable(f"The command log is unavailable ({type(exc).__name__}); retry.") from exc
    return CancelAccepted(executionId=run.executionId, status="cancel_requested")


ROUTES = [
    Route(
        "GET",
        "/api/v1/runs",
        list_runs,
        "Runs, newest first",
        "runs",
        scope="runs:read",
        response=Run,
        paged=True,
        params=(
            choice_param("status", ("running", "completed")),
            text_param_doc("workflowId"),
            limit_param(1000, 100),
            CURSOR,
        ),
    ),
    Route(
        "GET",
        "/api/v1/runs/{executionId}",
        get_run,
        "One run",
        "runs",
        scope="runs:read",
        response=Run,
    ),
    Route(
        "POST",
        "/api/v1/runs/{executionId}/cancel",
        cancel_run,
        "Request cancellation of a run",
        "runs",
        scope="runs:cancel",
        response=CancelAccepted,
        status=202,
        conflict="the run already finished",
    ),
]
