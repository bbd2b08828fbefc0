"""Routes: `/api/v1/logs`, `/api/v1/logs/{id}`, `/api/v1/logs/executions/{executionId}`."""

from datetime import UTC, datetime
from typing import Any

import msgspec

from schemas.bounds import MAX_DURATION_MS, MAX_USD
from schemas.events import Cost
from schemas.logs import (
    ExecutionData,
    ExecutionMetadata,
    ExecutionView,
    Limits,
    LogDetail,
    LogItem,
    WorkflowRef,
)
from services.api import logquery, logrows
from services.api.logblobs import (
    NARROW,
    NULL,
    SPANS_AND_OUTPUT,
    STATE,
    payloads,
    query_limits,
    raw_value,
    restore_withheld,
)
from services.api.logrows import FullLogRow, LogRow
from services.api.routing import (
    CURSOR,
    Call,
    Page,
    Param,
    Route,
    choice_param,
    limit_param,
    text_param_doc,
)
from services.api.usage import limits_block
from services.common.clock import iso_ms
from services.common.errors import Forbidden, NotFound

_cost_decoder = msgspec.json.Decoder(Cost)

_FULL = logrows.select_list(full=True, inline_bytes=None)
_BY_LOG_ID = f"SELECT {_FULL} FROM executions WHERE project_id = {{project:String}} AND log_id = {{id:String}} LIMIT 1"  # noqa: E501, S608
_BY_EXECUTION = f"SELECT {_FULL} FROM executions WHERE project_id = {{project:String}} AND {logquery.by_execution('id')} LIMIT 1"  # noqa: E501, S608


def epoch_ms(moment: datetime) -> int:
    """Epoch milliseconds of a ClickHouse DateTime64 (naive values are UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _cost(total: float, cost_json: str | None) -> Cost:
    return _cost_decoder.decode(cost_json) if cost_json else Cost(total=total)


def log_item(row: LogRow | FullLogRow, data: ExecutionData | None) -> LogItem:
    """A result row (BASIC or FULL columns) as a log item."""
    workflow: WorkflowRef | msgspec.UnsetType = msgspec.UNSET
    if isinstance(row, FullLogRow):
        workflow = WorkflowRef(
            id=row.workflow_id,
            name=row.workflow_name or None,
            description=row.workflow_description or None,
        )
        cost = _cost(row.cost_total, row.cost_json)
    else:
        cost = Cost(total=row.cost_total)
    # Keywords straight into the struct (no dict of extras): a page builds up to 1,000 of these.
    return LogItem(
        id=row.log_id, workflowId=row.workflow_id, executionId=row.execution_id, level=row.level,
        trigger=row.trigger, startedAt=iso_ms(row.started_at), endedAt=iso_ms(row.ended_at),
        totalDurationMs=int(row.total_duration_ms), cost=cost, files=raw_value(row.files),
        workflow=workflow, executionData=msgspec.UNSET if data is None else data,
    )  # fmt: skip


def _check_workspace(call: Call, project_id: str) -> None:
    workspace = call.query.get("workspaceId")
    if workspace is not None and workspace != project_id:
        raise Forbidden("workspaceId is not this key's project.")


async def list_logs(call: Call) -> Any:
    """Completed executions, newest first by default; asc + cursor never misses one.

    A page ends early, with `hasMore`, where it would pass `logs_page_max_bytes`.
    """
    key = call.principal
    _check_workspace(call, key.project_id)
    q = logquery.parse_query(call.query, key.project_id, call.deps.cursor_key)
    bound = await call.deps.visibility.bound()
    max_bytes = call.deps.settings.logs_page_max_bytes
    inline = logquery.inline_bytes(max_bytes, q.limit + 1)
    sql, params = logquery.build_sql(key.project_id, q, bound, inline)
    found = await call.deps.clickhouse.rows(
        sql, params, logquery.page_settings(q), limits=query_limits(call), narrow=NARROW
    )
    rows = logrows.named_rows(found, q.full)
    sizes = [logrows.row_bytes(r) for r in rows[: q.limit]]
    page = rows[: logquery.fitting(sizes, max_bytes)]
    data, fits = await payloads(call, key.project_id, page, sizes[: len(page)], q)
    has_more = fits < len(page) or len(page) < len(rows[: q.limit]) or len(rows) > q.limit
    page = await restore_withheld(call, key.project_id, page[:fits])
    empty = ExecutionData(
        traceSpans=NULL if q.trace_spans else msgspec.UNSET,
        finalOutput=NULL if q.final_output else msgspec.UNSET,
    )
    wants_data = q.trace_spans or q.final_output
    items = [log_item(r, data.get(r.execution_id, empty) if wants_data else None) for r in page]
    next_cursor = None
    if has_more:
        last = logquery.position_of(page[-1])
        next_cursor = logquery.make_cursor(key.project_id, q, last, call.deps.cursor_key)
    elif q.order == "asc":
        resume = logquery.resume_position(bound)
        if q.after is not None:
            resume = logquery.later(resume, q.after)
        next_cursor = logquery.make_cursor(key.project_id, q, resume, call.deps.cursor_key)
    return Page(items, next_cursor, has_more, extra={"limits": await limits_block(call, key)})


async def get_log(call: Call) -> LogDetail:
    """One log in full detail, its execution data and the limits."""
    key = call.principal
    rows = await call.deps.clickhouse.rows(
        _BY_LOG_ID, {"project": key.project_id, "id": call.path("id")}, limits=query_limits(call)
    )
    if not rows:
        raise NotFound(f"No log {call.path('id')} in this project.")
    # A `files` too long for `page_row` is read again, as on a page.
    named = logrows.named_rows(rows[:1], full=True)
    row = (await restore_withheld(call, key.project_id, named))[0]
    found = await call.deps.clickhouse.rows(
        SPANS_AND_OUTPUT, {"project": key.project_id, "ids": [row.execution_id]},
        limits=query_limits(call),
    )  # fmt: skip
    data = ExecutionData(traceSpans=NULL, finalOutput=NULL)
    if found:
        _execution_id, trace, final = found[0]
        data = ExecutionData(traceSpans=raw_value(trace), finalOutput=raw_value(final))
    item = log_item(row, data)
    return LogDetail(**msgspec.structs.asdict(item), limits=await limits_block(call, key))


async def get_execution(call: Call) -> ExecutionView:
    """An execution's workflow state and metadata."""
    key = call.principal
    execution_id = call.path("executionId")
    rows = await call.deps.clickhouse.rows(
        _BY_EXECUTION, {"project": key.project_id, "id": execution_id},
        logquery.BY_EXECUTION_SETTINGS, limits=query_limits(call),
    )  # fmt: skip
    if not rows:
        raise NotFound(f"No execution {execution_id} in this project.")
    found = await call.deps.clickhouse.rows(
        STATE, {"project": key.project_id, "ids": [execution_id]}, limits=query_limits(call)
    )
    state = NULL
    if found:
        _execution_id, stored = found[0]
        state = raw_value(stored)
    # The view shows no `files`: one too long for `page_row` is not read again.
    item = log_item(logrows.named_rows(rows[:1], full=True)[0], None)
    return ExecutionView(
        executionId=execution_id, workflowId=item.workflowId, workflowState=state,
        executionMetadata=ExecutionMetadata(
            trigger=item.trigger, startedAt=item.startedAt, endedAt=item.endedAt,
            totalDurationMs=item.totalDurationMs, cost=item.cost,
        ),
    )  # fmt: skip


_LIST = "comma-separated, at most 100 values of 1..256 characters"
_TIME = "ISO-8601 date or time, inclusive, on startedAt"
_LOG_PARAMS = (
    text_param_doc("workspaceId", "the key's project id (optional)"),
    Param("workflowIds", description=_LIST, bounds={"maxLength": logquery.MAX_LIST_CHARS}),
    Param("folderIds", description=_LIST, bounds={"maxLength": logquery.MAX_LIST_CHARS}),
    Param("triggers", description=_LIST, bounds={"maxLength": logquery.MAX_LIST_CHARS}),
    choice_param("level", ("info", "error")),
    Param("startDate", description=_TIME, bounds={"maxLength": logquery.MAX_TIME_CHARS}),
    Param("endDate", description=_TIME, bounds={"maxLength": logquery.MAX_TIME_CHARS}),
    text_param_doc("executionId"),
    Param("minDurationMs", "integer", bounds={"minimum": 0, "maximum": MAX_DURATION_MS}),
    Param("maxDurationMs", "integer", bounds={"minimum": 0, "maximum": MAX_DURATION_MS}),
    Param("minCost", "number", "USD", {"minimum": 0, "maximum": MAX_USD}),
    Param("maxCost", "number", "USD", {"minimum": 0, "maximum": MAX_USD}),
    text_param_doc("model"),
    limit_param(1000, 100),
    CURSOR,
    choice_param("order", ("desc", "asc")),
    choice_param("details", ("basic", "full")),
    Param("includeTraceSpans", "boolean"),
    Param("includeFinalOutput", "boolean"),
)
assert tuple(p.name for p in _LOG_PARAMS) == logquery.PARAMS

ROUTES = [
    Route(
        "GET",
        "/api/v1/logs",
        list_logs,
        "List completed executions (gapless with order=asc)",
        "logs",
        scope="logs:read",
        response=LogItem,
        paged=True,
        params=_LOG_PARAMS,
        extra_doc={"limits": Limits},
    ),
    Route(
        "GET",
        "/api/v1/logs/{id}",
        get_log,
        "One log in full detail",
        "logs",
        scope="logs:read",
        response=LogDetail,
    ),
    Route(
        "GET",
        "/api/v1/logs/executions/{executionId}",
        get_execution,
        "An execution's workflow state and metadata",
        "logs",
        scope="logs:read",
        response=ExecutionView,
    ),
]
