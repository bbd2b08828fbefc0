"""The logs page query (pure): validated filters -> bound SQL, and the page's size in bytes.

Only conditions from this module's allow-list reach SQL, always with bound parameters.
"""

from typing import Any

from services.api.logquery import LogQuery

BASIC_COLUMNS = (
    "log_id", "workflow_id", "execution_id", "level", "trigger", "started_at", "ended_at",
    "total_duration_ms", "cost_total", "files", "ingest_ts", "partition", "offset",
)  # fmt: skip
FULL_COLUMNS = (*BASIC_COLUMNS, "workflow_name", "workflow_description", "cost_json")
# Columns that can be large (up to an event's size) come back inline only up to `inline` bytes;
# their lengths always do, so the page is cut by its real size before anything large is read.
LARGE_COLUMNS = {"files": 9, "cost_json": 15}
ROW_OVERHEAD_BYTES = 256  # field names, times and numbers of one item
INLINE_MIN_BYTES = 1024

_CONDITIONS: tuple[tuple[str, str, str], ...] = (
    ("workflowIds", "workflow_id IN {workflowIds:Array(String)}", "Array(String)"),
    ("folderIds", "folder_id IN {folderIds:Array(String)}", "Array(String)"),
    ("triggers", "trigger IN {triggers:Array(String)}", "Array(String)"),
    ("level", "level = {level:String}", "String"),
    ("startMs", "started_at >= fromUnixTimestamp64Milli({startMs:Int64})", "Int64"),
    ("endMs", "started_at <= fromUnixTimestamp64Milli({endMs:Int64})", "Int64"),
    # Through the by_execution projection to the exact sort-key position: no granule scan.
    (
        "executionId",
        "(ingest_ts, partition, offset) IN (SELECT ingest_ts, partition, offset FROM executions "
        "WHERE project_id = {project:String} AND execution_id = {executionId:String})",
        "String",
    ),
    ("minDurationMs", "total_duration_ms >= {minDurationMs:UInt64}", "UInt64"),
    ("maxDurationMs", "total_duration_ms <= {maxDurationMs:UInt64}", "UInt64"),
    ("minCost", "cost_total >= {minCost:Float64}", "Float64"),
    ("maxCost", "cost_total <= {maxCost:Float64}", "Float64"),
    ("model", "has(models, {model:String})", "String"),
)


def build_sql(
    project_id: str, q: LogQuery, watermark: int, inline_bytes: int | None = None
) -> tuple[str, dict[str, Any]]:
    """The page query: filters, the visibility bound, keyset pagination, never OFFSET.

    With `inline_bytes`, a `files` or `cost_json` longer than that comes back as '' and each row
    ends with the lengths of those columns (see `page_bytes`).
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
    names: tuple[str, ...] = FULL_COLUMNS if q.full else BASIC_COLUMNS
    if inline_bytes is not None:
        # A literal, not a bound parameter: ClickHouse plans a parameter here noticeably slower.
        limit = int(inline_bytes)
        large = [name for name in names if name in LARGE_COLUMNS]
        names = (
            *(f"if(length({n}) <= {limit}, {n}, '')" if n in large else n for n in names),
            *(f"length({n})" for n in large),
        )
    sql = (
        f"SELECT {', '.join(names)} FROM executions WHERE {' AND '.join(where)} "  # noqa: S608 - allow-listed
        f"ORDER BY ingest_ts {direction}, partition {direction}, offset {direction} "
        "LIMIT {limit:UInt32}"
    )
    return sql, params


def inline_bytes(max_bytes: int, rows: int) -> int:
    """How long a large value may be to come back inline: a page of them stays near `max_bytes`."""
    return max(INLINE_MIN_BYTES, max_bytes // (2 * rows))


def row_bytes(row: tuple[Any, ...], full: bool) -> int:
    """What a row of `build_sql(..., inline_bytes)` costs in the response, blobs excluded."""
    fixed = len(row[0]) + len(row[1]) + len(row[2]) + len(row[4]) + ROW_OVERHEAD_BYTES
    if not full:
        return int(fixed + row[13])
    return int(fixed + len(row[13]) + len(row[14]) + row[16] + row[17])


def fitting(sizes: list[int], max_bytes: int) -> int:
    """How many leading items of these sizes fit in `max_bytes` (the first always does)."""
    total = 0
    for index, size in enumerate(sizes):
        total += size
        if total > max_bytes and index > 0:
            return index
    return len(sizes)


def withheld(row: tuple[Any, ...], full: bool, inline: int) -> bool:
    """Whether a large value of this row was left out of the page query."""
    if full:
        return bool(row[16] > inline or row[17] > inline)
    return bool(row[13] > inline)
