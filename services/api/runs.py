"""Routes: `/api/v1/runs`, `/api/v1/runs/{executionId}` and its cancellation."""

import hashlib
from datetime import datetime
from typing import Any, NamedTuple

from msgspec import Struct, json

from schemas import topics
from schemas.events import CancelRequested, topic_key
from schemas.logs import CancelAccepted, Run, RunStatus
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
from services.common.errors import Conflict, InvalidCursor, InvalidInput, NotFound
from services.common.http import request_id_of

# One run by id (`_find`). Both branches yield the columns of `RunRow`.
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
SELECT execution_id, workflow_id, workflow_name, status, trigger, mode, started_at, ended_at,
       total_duration_ms
FROM runs WHERE project_id = {{project:String}} {where}
ORDER BY started_at DESC, execution_id DESC, version DESC LIMIT {{fetch:UInt32}}
"""
_AFTER = (
    "AND started_at <= fromUnixTimestamp64Milli({as:Int64}) "
    "AND (started_at, execution_id) < (fromUnixTimestamp64Milli({as:Int64}), {aid:String})"
)
_COMPLETED_AMONG = (
    "SELECT execution_id FROM executions WHERE project_id = {project:String} "
    "AND execution_id IN {ids:Array(String)}"
)
# Only completed runs can be told by their row alone; a running run is a started row with no
# completed row before it, so `running` reads both versions and keeps the latest of each run.
_STATUS_VERSION = {"completed": "AND version = 1"}
SCAN_ROWS = 20_000  # rows of `runs` one request may read; past it the page ends short
NARROW = "filter by workflowId, or page with a smaller limit"


class RunRow(NamedTuple):
    """A row of `_PAGE` or `_find`: one version of a run (running, then completed)."""

    execution_id: str
    workflow_id: str
    workflow_name: str
    status: RunStatus
    trigger: str
    mode: str
    started_at: datetime
    ended_at: datetime | None
    total_duration_ms: int | None


class RunsCursor(Struct, frozen=True):
    """Where a runs listing stopped: (started_at ms, execution id), newest first."""

    v: int
    h: str
    started: int
    id: str


def _run(row: RunRow) -> Run:
    ended, duration = row.ended_at, row.total_duration_ms
    return Run(
        executionId=row.execution_id, workflowId=row.workflow_id,
        workflowName=row.workflow_name or None, status=row.status,
        trigger=row.trigger, startedAt=iso_ms(epoch_ms(row.started_at)), mode=row.mode or None,
        endedAt=iso_ms(epoch_ms(ended)) if ended is not None else None,
        totalDurationMs=int(duration) if duration is not None else None,
    )  # fmt: skip


def cursor_binding(project_id: str, status: str | None, workflow_id: str | None) -> str:
    """What a runs cursor is bound to: the whole project id, the status and the workflow."""
    return hashlib.sha256(json.encode([project_id, status, workflow_id])).hexdigest()[:32]


def runs_sql(status: str | None, workflow_id: str | None, after: bool) -> str:
    """A keyset read of `runs` newest first, from fixed fragments only."""
    where = [
        "AND workflow_id = {workflow:String}" if workflow_id else "",
        _STATUS_VERSION.get(status or "", ""),
        _AFTER if after else "",
    ]
    return _PAGE.format(where=" ".join(part for part in where if part))


def latest_per_run(rows: list[RunRow]) -> list[RunRow]:
    """The first row of each run: rows come newest first, a run's latest version first."""
    seen: set[tuple[datetime, str]] = set()
    latest = []
    for row in rows:
        key = (row.started_at, row.execution_id)
        if key not in seen:
            seen.add(key)
            latest.append(row)
    return latest


async def _without_completed(call: Call, project_id: str, runs: list[RunRow]) -> list[RunRow]:
    """Drop running rows whose execution completed (reported with another startedAt)."""
    ids = [row.execution_id for row in runs if row.status == "running"]
    if not ids:
        return runs
    found = await call.deps.clickhouse.rows(
        _COMPLETED_AMONG, {"project": project_id, "ids": ids},
        limits=call.deps.settings.query_limits_for("runs"), narrow=NARROW,
    )  # fmt: skip
    completed = {execution_id for (execution_id,) in found}
    return [r for r in runs if not (r.status == "running" and r.execution_id in completed)]


async def list_runs(call: Call) -> Page:
    """Runs newest first, optionally only running or only completed; a bounded read each."""
    project_id = call.principal.project_id
    status = call.query.get("status")
    if status not in (None, "running", "completed"):
        raise InvalidInput.field("status", "Must be running or completed.")
    workflow_id = text_param(call.query, "workflowId")
    limit = int_param(call.query, "limit", 100, 1, 1000)
    binding = cursor_binding(project_id, status, workflow_id)
    after: tuple[int, str] | None = None
    if token := call.query.get("cursor"):
        cursor = decode_cursor(token, RunsCursor, call.deps.cursor_key)
        if cursor.h != binding:
            raise InvalidCursor("The cursor was issued for other filters or project.")
        after = (cursor.started, cursor.id)
    runs, after, exhausted = await _scan(call, project_id, status, workflow_id, limit, after)
    page, has_more = runs[:limit], len(runs) > limit or not exhausted
    next_cursor = None
    if has_more:
        last = page[-1]
        started, last_id = (
            (epoch_ms(last.started_at), last.execution_id) if len(runs) > limit else after
        )
        next_cursor = encode_cursor(
            RunsCursor(v=1, h=binding, started=started, id=last_id), call.deps.cursor_key
        )
    return Page([_run(r) for r in page], next_cursor, has_more)


async def _scan(
    call: Call,
    project_id: str,
    status: str | None,
    workflow_id: str | None,
    limit: int,
    after: tuple[int, str] | None,
) -> tuple[list[RunRow], Any, bool]:
    """Up to limit + 1 runs after `after`: (runs, last row read, whether nothing is left)."""
    runs: list[RunRow] = []
    scanned, exhausted, fetch = 0, False, 0
    while len(runs) <= limit and not exhausted and scanned < SCAN_ROWS:
        # A run has a started and a completed row at most; chunks grow while rows are skipped.
        fetch = min(max(2 * (limit + 1 - len(runs)), 2 * fetch), SCAN_ROWS - scanned)
        params: dict[str, Any] = {"project": project_id, "workflow": workflow_id, "fetch": fetch}
        if after is not None:
            params.update({"as": after[0], "aid": after[1]})
        found = await call.deps.clickhouse.rows(
            runs_sql(status, workflow_id, after is not None), params,
            limits=call.deps.settings.query_limits_for("runs"), narrow=NARROW,
        )  # fmt: skip
        rows = [RunRow(*row) for row in found]
        scanned, exhausted = scanned + len(rows), len(rows) < fetch
        latest = latest_per_run(rows)
        if status == "running":
            latest = [row for row in latest if row.status == "running"]
        runs += await _without_completed(call, project_id, latest)
        if rows:
            after = (epoch_ms(rows[-1].started_at), rows[-1].execution_id)
    return runs, after, exhausted


async def _find(call: Call, execution_id: str) -> Run | None:
    sql = "SELECT * FROM ({c} UNION ALL {r}) ORDER BY status = 'running' LIMIT 1".format(  # noqa: S608
        c=_COMPLETED.replace("{where}", "AND execution_id = {id:String}"),
        r=_RUNNING.replace("{where}", "AND execution_id = {id:String}"),
    )
    rows = await call.deps.clickhouse.rows(
        sql, {"project": call.principal.project_id, "id": execution_id},
        limits=call.deps.settings.query_limits_for("runs"), narrow=NARROW,
    )  # fmt: skip
    return _run(RunRow(*rows[0])) if rows else None


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
    await call.deps.producer.send_and_wait(
        topics.COMMANDS, json.encode(command), key=topic_key(key.project_id, run.workflowId)
    )
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
