"""Routes: `/api/v1/logs`, `/api/v1/logs/{id}`, `/api/v1/logs/executions/{executionId}`."""

import time
from datetime import UTC, datetime
from typing import Any, NamedTuple

import msgspec

from schemas.bounds import MAX_DURATION_MS, MAX_USD
from schemas.events import Cost
from schemas.limits import BucketState, RateLimits, Usage
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
from services.api.events import execution_buckets
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
from services.common.clock import iso_ms, now_ms
from services.common.config import QueryLimits
from services.common.controlplane import KeyRecord
from services.common.errors import Forbidden, NotFound

_cost_decoder = msgspec.json.Decoder(Cost)
_NULL = msgspec.Raw(b"null")

_USAGE = (
    "SELECT sum(cost) FROM usage_monthly WHERE project_id = {project:String} "
    "AND month = toDate({month:String})"
)
_PAYLOAD_ROWS = (
    "SELECT execution_id, {columns} FROM execution_payloads "
    "WHERE project_id = {{project:String}} AND execution_id IN {{ids:Array(String)}} "
    "LIMIT 1 BY execution_id"
)
_BLOBS = ("trace_spans", "final_output")
_SPANS_AND_OUTPUT = _PAYLOAD_ROWS.format(columns="trace_spans, final_output")
_STATE = _PAYLOAD_ROWS.format(columns="workflow_state")
# Large values the page query left out, by sort-key position (the primary key finds them).
_WITHHELD = (
    "SELECT ingest_ts, partition, offset, files, cost_json FROM executions "
    "WHERE project_id = {project:String} AND ingest_ts IN {ts:Array(Int64)}"
)
NARROW = "add startDate/endDate, workflowIds, level or executionId, or lower limit"
_FULL = ", ".join(logrows.FULL_COLUMNS)
_BY_LOG_ID = f"SELECT {_FULL} FROM executions WHERE project_id = {{project:String}} AND log_id = {{id:String}} LIMIT 1"  # noqa: E501, S608
_BY_EXECUTION = f"SELECT {_FULL} FROM executions WHERE project_id = {{project:String}} AND execution_id = {{id:String}} LIMIT 1"  # noqa: E501, S608


def epoch_ms(moment: datetime) -> int:
    """Epoch milliseconds of a ClickHouse DateTime64 (naive values are UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _raw(text: str) -> Any:
    return msgspec.Raw(text.encode()) if text else _NULL


def _cost(total: float, cost_json: str | None) -> Cost:
    return _cost_decoder.decode(cost_json) if cost_json else Cost(total=total)


def log_item(row: LogRow | FullLogRow, data: ExecutionData | None) -> LogItem:
    """A result row (BASIC or FULL columns) as a log item."""
    extra: dict[str, Any] = {}
    cost_json = None
    if isinstance(row, FullLogRow):
        extra["workflow"] = WorkflowRef(
            id=row.workflow_id,
            name=row.workflow_name or None,
            description=row.workflow_description or None,
        )
        cost_json = row.cost_json
    if data is not None:
        extra["executionData"] = data
    return LogItem(
        id=row.log_id, workflowId=row.workflow_id, executionId=row.execution_id, level=row.level,
        trigger=row.trigger, startedAt=iso_ms(epoch_ms(row.started_at)),
        endedAt=iso_ms(epoch_ms(row.ended_at)), totalDurationMs=int(row.total_duration_ms),
        cost=_cost(row.cost_total, cost_json), files=_raw(row.files), **extra,
    )  # fmt: skip


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


def _limits(call: Call) -> QueryLimits:
    return call.deps.settings.query_limits_for("logs")


def _blob_columns(asked: tuple[bool, bool], inline: int | None) -> str:
    """The asked-for blobs; with `inline`, only up to that many bytes and with their lengths."""
    columns = []
    for name, wanted in zip(_BLOBS, asked, strict=True):
        if not wanted:
            columns.append(f"'' AS {name}" + (", 0" if inline is not None else ""))
        elif inline is not None:
            limit = int(inline)  # a literal: see logquery.build_sql
            columns.append(f"if(length({name}) <= {limit}, {name}, ''), length({name})")
        else:
            columns.append(name)
    return ", ".join(columns)


class BlobRow(NamedTuple):
    """A row of `_PAYLOAD_ROWS` with inline blobs: each blob ('' when too long) and its length."""

    execution_id: str
    trace_spans: str
    trace_spans_bytes: int
    final_output: str
    final_output_bytes: int


async def _payloads(
    call: Call,
    project_id: str,
    page: list[LogRow | FullLogRow],
    spent: list[int],
    q: logquery.LogQuery,
) -> tuple[dict[str, ExecutionData], int]:
    """The asked-for blobs of a page, and how many of its rows fit the byte bound with them.

    `spent` holds each row's size without blobs; blobs too long to come back inline are read
    again, by id, only for the rows that fit.
    """
    asked = (q.trace_spans, q.final_output)
    if not page or not any(asked):
        return {}, len(page)
    max_bytes = call.deps.settings.logs_page_max_bytes
    inline = logquery.inline_bytes(max_bytes, len(page))
    ids = [r.execution_id for r in page]
    found = await call.deps.clickhouse.rows(
        _PAYLOAD_ROWS.format(columns=_blob_columns(asked, inline)),
        {"project": project_id, "ids": ids},
        limits=_limits(call), narrow=NARROW,
    )  # fmt: skip
    rows = [BlobRow(*row) for row in found]
    blobs = {r.execution_id: (r.trace_spans, r.final_output) for r in rows}
    lengths = {r.execution_id: (r.trace_spans_bytes, r.final_output_bytes) for r in rows}
    sizes = [size + sum(lengths.get(i, (0, 0))) for size, i in zip(spent, ids, strict=True)]
    fits = logquery.fitting(sizes, max_bytes)
    missing = [i for i in ids[:fits] if max(lengths.get(i, (0, 0))) > inline]
    if missing:
        again = await call.deps.clickhouse.rows(
            _PAYLOAD_ROWS.format(columns=_blob_columns(asked, None)),
            {"project": project_id, "ids": missing}, limits=_limits(call), narrow=NARROW,
        )  # fmt: skip
        blobs |= {execution_id: (trace, final) for execution_id, trace, final in again}
    data = {
        execution_id: ExecutionData(
            traceSpans=_raw(trace) if q.trace_spans else msgspec.UNSET,
            finalOutput=_raw(final) if q.final_output else msgspec.UNSET,
        )
        for execution_id, (trace, final) in blobs.items()
    }
    return data, fits


async def _restore_withheld(
    call: Call, project_id: str, page: list[LogRow | FullLogRow], inline: int
) -> list[LogRow | FullLogRow]:
    """The page with the large `files`/`cost_json` values the page query left out."""
    short = [r for r in page if logrows.withheld(r, inline)]
    if not short:
        return page
    found = await call.deps.clickhouse.rows(
        _WITHHELD, {"project": project_id, "ts": sorted({r.ingest_ts for r in short})},
        limits=_limits(call), narrow=NARROW,
    )  # fmt: skip
    values = {(ts, p, off): (files, cost) for ts, p, off, files, cost in found}
    restored: list[LogRow | FullLogRow] = []
    for row in page:
        got = values.get((row.ingest_ts, row.partition, row.offset))
        if got and logrows.withheld(row, inline):
            files, cost_json = got
            if isinstance(row, FullLogRow):
                row = row._replace(files=files, cost_json=cost_json)
            else:
                row = row._replace(files=files)
        restored.append(row)
    return restored


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
    found = await call.deps.clickhouse.rows(sql, params, limits=_limits(call), narrow=NARROW)
    rows = logrows.named_rows(found, q.full)
    sizes = [logrows.row_bytes(r) for r in rows[: q.limit]]
    page = rows[: logquery.fitting(sizes, max_bytes)]
    data, fits = await _payloads(call, key.project_id, page, sizes[: len(page)], q)
    has_more = fits < len(page) or len(page) < len(rows[: q.limit]) or len(rows) > q.limit
    page = await _restore_withheld(call, key.project_id, page[:fits], inline)
    empty = ExecutionData(
        traceSpans=_NULL if q.trace_spans else msgspec.UNSET,
        finalOutput=_NULL if q.final_output else msgspec.UNSET,
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
        _BY_LOG_ID, {"project": key.project_id, "id": call.path("id")}, limits=_limits(call)
    )
    if not rows:
        raise NotFound(f"No log {call.path('id')} in this project.")
    row = FullLogRow(*rows[0])
    found = await call.deps.clickhouse.rows(
        _SPANS_AND_OUTPUT, {"project": key.project_id, "ids": [row.execution_id]},
        limits=_limits(call),
    )  # fmt: skip
    data = ExecutionData(traceSpans=_NULL, finalOutput=_NULL)
    if found:
        _execution_id, trace, final = found[0]
        data = ExecutionData(traceSpans=_raw(trace), finalOutput=_raw(final))
    item = log_item(row, data)
    return LogDetail(**msgspec.structs.asdict(item), limits=await limits_block(call, key))


async def get_execution(call: Call) -> ExecutionView:
    """An execution's workflow state and metadata."""
    key = call.principal
    execution_id = call.path("executionId")
    rows = await call.deps.clickhouse.rows(
        _BY_EXECUTION, {"project": key.project_id, "id": execution_id}, limits=_limits(call)
    )
    if not rows:
        raise NotFound(f"No execution {execution_id} in this project.")
    found = await call.deps.clickhouse.rows(
        _STATE, {"project": key.project_id, "ids": [execution_id]}, limits=_limits(call)
    )
    state = _NULL
    if found:
        _execution_id, stored = found[0]
        state = _raw(stored)
    item = log_item(FullLogRow(*rows[0]), None)
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
