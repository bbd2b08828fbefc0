"""The logs query (pure): parameters -> validated filters -> bound SQL, and the cursor codec.

Only conditions from this module's allow-list reach SQL, always with bound parameters.
"""

import hashlib
import re
from datetime import UTC, date, datetime, time
from typing import Any, Literal

import msgspec
from msgspec import Struct

from schemas.api import ErrorDetail
from schemas.bounds import MAX_DURATION_MS, MAX_QUERY_LIST, MAX_USD, time_error
from services.api import logrows
from services.api.logrows import FullLogRow, LogRow
from services.common.cursor import decode_cursor, encode_cursor
from services.common.errors import InvalidCursor, InvalidInput

LIST_PARAMS = ("workflowIds", "folderIds", "triggers")
PARAMS = (
    "workspaceId", "workflowIds", "folderIds", "triggers", "level", "startDate", "endDate",
    "executionId", "minDurationMs", "maxDurationMs", "minCost", "maxCost", "model", "limit",
    "cursor", "order", "details", "includeTraceSpans", "includeFinalOutput",
)  # fmt: skip
MAX_LIST_ITEMS = MAX_QUERY_LIST
MAX_LIST_CHARS = 2048
MAX_TIME_CHARS = 64
_INTEGER = re.compile(r"[0-9]{1,20}")
_DECIMAL = re.compile(r"[0-9]{1,20}(\.[0-9]{1,20})?([eE][+-]?[0-9]{1,3})?")


class Filters(Struct, frozen=True):
    """Everything that decides which rows match; a cursor is bound to its hash."""

    workflowIds: tuple[str, ...] = ()
    folderIds: tuple[str, ...] = ()
    triggers: tuple[str, ...] = ()
    level: str | None = None
    startMs: int | None = None
    endMs: int | None = None
    executionId: str | None = None
    minDurationMs: int | None = None
    maxDurationMs: int | None = None
    minCost: float | None = None
    maxCost: float | None = None
    model: str | None = None


class Position(Struct, frozen=True, array_like=True):
    """A place in completion order: (ingest_ts, partition, offset)."""

    ts: int
    partition: int
    offset: int


class LogsCursor(Struct, frozen=True):
    """What a logs cursor carries: where to resume, for which listing."""

    v: int
    order: str
    pos: Position
    h: str


class LogQuery(Struct, frozen=True):
    """A validated `GET /api/v1/logs` request."""

    filters: Filters
    order: Literal["asc", "desc"] = "desc"
    limit: int = 100
    after: Position | None = None
    full: bool = False
    trace_spans: bool = False
    final_output: bool = False


def _iso_bound(raw: str, field: str, end: bool) -> int:
    if len(raw) > MAX_TIME_CHARS:
        raise InvalidInput.field(field, f"At most {MAX_TIME_CHARS} characters.")
    text = raw.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            moment = datetime.combine(day, time.max if end else time.min, tzinfo=UTC)
        else:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        problem = time_error(moment)
    except (ValueError, OverflowError):
        raise InvalidInput.field(
            field, f"Must be an ISO-8601 date or time, got {raw[:64]!r}."
        ) from None
    if problem:
        raise InvalidInput.field(field, problem)
    return int(moment.timestamp() * 1000)


def _number(raw: str, field: str, kind: type[int] | type[float], low: float, high: float) -> Any:
    """A plain decimal number (no sign, no `_`, no `inf`) within [low, high]."""
    if (_INTEGER if kind is int else _DECIMAL).fullmatch(raw) is None:
        word = "an integer" if kind is int else "a number"
        raise InvalidInput.field(field, f"Must be {word}, got {raw[:64]!r}.")
    value = kind(raw)
    if not low <= value <= high:
        raise InvalidInput.field(field, f"Must be between {low:g} and {high:g}.")
    return value


def _flag(raw: str, field: str) -> bool:
    if raw not in ("true", "false"):
        raise InvalidInput.field(field, f"Must be true or false, got {raw!r}.")
    return raw == "true"


def _choice(raw: str, field: str, allowed: tuple[str, ...]) -> str:
    if raw not in allowed:
        raise InvalidInput.field(field, f"Must be one of {', '.join(allowed)}; got {raw!r}.")
    return raw


def _list(raw: str, field: str) -> tuple[str, ...]:
    if len(raw) > MAX_LIST_CHARS:
        raise InvalidInput.field(field, f"At most {MAX_LIST_CHARS} characters.")
    items = tuple(dict.fromkeys(part.strip() for part in raw.split(",") if part.strip()))
    if not items:
        raise InvalidInput.field(field, "Must be a non-empty comma-separated list.")
    if len(items) > MAX_LIST_ITEMS:
        raise InvalidInput.field(field, f"At most {MAX_LIST_ITEMS} values.")
    if any(len(item) > 256 for item in items):
        raise InvalidInput.field(field, "Each value must be 1 to 256 characters.")
    return items


def _text(raw: str, field: str) -> str:
    if not raw or len(raw) > 256:
        raise InvalidInput.field(field, "Must be 1 to 256 characters.")
    return raw


def parse_filters(query: dict[str, str]) -> Filters:
    """Row filters from query parameters; every bad value is a VALIDATION_ERROR naming it."""
    values: dict[str, Any] = {}
    errors: list[ErrorDetail] = []
    parsers: dict[str, Any] = {
        "workflowIds": _list, "folderIds": _list, "triggers": _list,
        "level": lambda r, f: _choice(r, f, ("info", "error")),
        "startDate": lambda r, f: _iso_bound(r, f, end=False),
        "endDate": lambda r, f: _iso_bound(r, f, end=True),
        "executionId": _text, "model": _text,
        "minDurationMs": lambda r, f: _number(r, f, int, 0, MAX_DURATION_MS),
        "maxDurationMs": lambda r, f: _number(r, f, int, 0, MAX_DURATION_MS),
        "minCost": lambda r, f: _number(r, f, float, 0, MAX_USD),
        "maxCost": lambda r, f: _number(r, f, float, 0, MAX_USD),
    }  # fmt: skip
    names = {"startDate": "startMs", "endDate": "endMs"}
    for param, parse in parsers.items():
        if param in query:
            try:
                values[names.get(param, param)] = parse(query[param], param)
            except InvalidInput as exc:
                errors.extend(exc.details or [])
    filters = Filters(**values)
    for low, high, field in (
        (filters.startMs, filters.endMs, "endDate"),
        (filters.minDurationMs, filters.maxDurationMs, "maxDurationMs"),
        (filters.minCost, filters.maxCost, "maxCost"),
    ):
        if low is not None and high is not None and high < low:
            errors.append(ErrorDetail(field=field, message="Must not be below its lower bound."))
    if errors:
        fields = ", ".join(e.field for e in errors)
        raise InvalidInput(f"Invalid query parameters: {fields}.", errors)
    return filters


def filter_hash(project_id: str, filters: Filters, order: str) -> str:
    """What a cursor is bound to: the project, the filters and the order."""
    material = msgspec.json.encode([project_id, order, filters])
    return hashlib.sha256(material).hexdigest()[:24]


def parse_query(query: dict[str, str], project_id: str, cursor_key: bytes) -> LogQuery:
    """The whole logs request, cursor verified against this project and these filters."""
    filters = parse_filters(query)
    order = _choice(query.get("order", "desc"), "order", ("asc", "desc"))
    limit = _number(query.get("limit", "100"), "limit", int, 1, 1000)
    details = _choice(query.get("details", "basic"), "details", ("basic", "full"))
    after = None
    if token := query.get("cursor"):
        cursor = decode_cursor(token, LogsCursor, cursor_key)
        if cursor.order != order or cursor.h != filter_hash(project_id, filters, order):
            raise InvalidCursor("The cursor was issued for other filters, order or project.")
        after = cursor.pos
    return LogQuery(
        filters=filters, order="asc" if order == "asc" else "desc", limit=limit, after=after,
        full=details == "full",
        trace_spans=_flag(query.get("includeTraceSpans", "false"), "includeTraceSpans"),
        final_output=_flag(query.get("includeFinalOutput", "false"), "includeFinalOutput"),
    )  # fmt: skip


def make_cursor(project_id: str, q: LogQuery, pos: Position, cursor_key: bytes) -> str:
    """A signed cursor resuming after `pos` for this listing."""
    h = filter_hash(project_id, q.filters, q.order)
    return encode_cursor(LogsCursor(v=1, order=q.order, pos=pos, h=h), cursor_key)


def by_execution(param: str) -> str:
    """The condition selecting an execution's row by the id in parameter `param`.

    The by_execution projection (ordered by project and execution id) gives the row's sorting
    key from one granule, then the table's primary key reads the row's granule. The plain
    `execution_id = ...` read the execution-id bloom filter of every granule of the project
    instead (about 500 of them for 2M executions: the most of a 13 ms lookup, profiled at 10M
    rows), and ClickHouse 26.9 does not use the projection as an index for it. Run it with
    `BY_EXECUTION_SETTINGS`.
    """
    return (
        "(ingest_ts, partition, offset) IN (SELECT ingest_ts, partition, offset FROM executions "  # noqa: S608 - `param` names a bound parameter
        f"WHERE project_id = {{project:String}} AND execution_id = {{{param}:String}})"
    )


# One thread for one granule; no skip index is worth reading once the sorting key is known.
BY_EXECUTION_SETTINGS: dict[str, Any] = {"max_threads": 1, "use_skip_indexes": 0}


# A full page's cost comes back inline only up to `inline` bytes (a basic one's `files` is in
# `page_row` up to its own bound); its length always does, so the page is cut by its real size
# before anything large is read.
INLINE_MIN_BYTES = 1024

_CONDITIONS: tuple[tuple[str, str, str], ...] = (
    ("workflowIds", "workflow_id IN {workflowIds:Array(String)}", "Array(String)"),
    ("folderIds", "folder_id IN {folderIds:Array(String)}", "Array(String)"),
    ("triggers", "trigger IN {triggers:Array(String)}", "Array(String)"),
    ("level", "level = {level:String}", "String"),
    ("startMs", "started_at >= fromUnixTimestamp64Milli({startMs:Int64})", "Int64"),
    ("endMs", "started_at <= fromUnixTimestamp64Milli({endMs:Int64})", "Int64"),
    ("executionId", by_execution("executionId"), "String"),
    ("minDurationMs", "total_duration_ms >= {minDurationMs:UInt64}", "UInt64"),
    ("maxDurationMs", "total_duration_ms <= {maxDurationMs:UInt64}", "UInt64"),
    ("minCost", "cost_total >= {minCost:Float64}", "Float64"),
    ("maxCost", "cost_total <= {maxCost:Float64}", "Float64"),
    ("model", "has(models, {model:String})", "String"),
)


def build_sql(
    project_id: str, q: LogQuery, watermark: int, inline_bytes: int
) -> tuple[str, dict[str, Any]]:
    """The page query: filters, the visibility bound, keyset pagination, never OFFSET.

    Its rows are `logrows.select_list(q.full, inline_bytes)`, named by `logrows.named_rows`.
    """
    params: dict[str, Any] = {"project": project_id, "wm": watermark, "limit": q.limit + 1}
    where = ["project_id = {project:String}", "ingest_ts < {wm:Int64}"]
    for name, condition, _type in _CONDITIONS:
        value = getattr(q.filters, name)
        if value is None or value == ():
            continue
        where.append(condition)
        params[name] = list(value) if isinstance(value, tuple) else value
    direction = "ASC" if q.order == "asc" else "DESC"
    if q.after is not None:
        # The plain range on ingest_ts lets the primary key prune; the tuple breaks ties.
        op, bound = (">", ">=") if q.order == "asc" else ("<", "<=")
        where.append(f"ingest_ts {bound} {{ats:Int64}}")
        where.append(
            f"(ingest_ts, partition, offset) {op} ({{ats:Int64}}, {{ap:Int32}}, {{aoff:Int64}})"
        )
        params.update(ats=q.after.ts, ap=q.after.partition, aoff=q.after.offset)
    columns = logrows.select_list(q.full, inline_bytes)
    sql = (
        f"SELECT {columns} FROM executions WHERE {' AND '.join(where)} "  # noqa: S608 - allow-listed
        f"ORDER BY ingest_ts {direction}, partition {direction}, offset {direction} "
        "LIMIT {limit:UInt32}"
    )
    return sql, params


def page_settings(q: LogQuery) -> dict[str, Any]:
    """ClickHouse settings of the page query, by what it filters on.

    A page reads a granule or two at one end of the project's key range: one thread reads that
    without the pool hand-offs of a parallel plan (profiled: the same rows, a third less CPU).
    Only an `executionId` lookup uses a projection (see `by_execution`); other pages skip
    weighing the table's projections while planning. Filters that may scan (level, duration,
    cost, model, workflows, time) keep the default threads.
    """
    if q.filters.executionId is not None:
        return dict(BY_EXECUTION_SETTINGS)
    if q.filters == Filters():
        return {"max_threads": 1, "optimize_use_projections": 0}
    return {"optimize_use_projections": 0}


def inline_bytes(max_bytes: int, rows: int) -> int:
    """How long a large value may be to come back inline: a page of them stays near `max_bytes`."""
    return max(INLINE_MIN_BYTES, max_bytes // (2 * rows))


def fitting(sizes: list[int], max_bytes: int) -> int:
    """How many leading items of these sizes fit in `max_bytes` (the first always does)."""
    total = 0
    for index, size in enumerate(sizes):
        total += size
        if total > max_bytes and index > 0:
            return index
    return len(sizes)


def resume_position(watermark: int) -> Position:
    """Where an asc reader resumes once it has seen everything visible: just below the bound."""
    return Position(ts=watermark, partition=-1, offset=-1)


def position_of(row: LogRow | FullLogRow) -> Position:
    """Where a row is in completion order."""
    return Position(ts=row.ingest_ts, partition=row.partition, offset=row.offset)


def later(a: Position, b: Position) -> Position:
    """The later of two positions in completion order."""
    return a if (a.ts, a.partition, a.offset) >= (b.ts, b.partition, b.offset) else b
