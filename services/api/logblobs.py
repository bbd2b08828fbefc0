"""The large values of log rows, read apart from the page query: trace spans, final output and
workflow state from `execution_payloads`, and `files`/`cost_json` values too long for a page."""

from typing import Any

import msgspec

from schemas.logs import ExecutionData
from services.api import logquery, logsql
from services.api.routing import Call
from services.common.config import QueryLimits

NULL = msgspec.Raw(b"null")
NARROW = "add startDate/endDate, workflowIds, level or executionId, or lower limit"
PAYLOAD_ROWS = (
    "SELECT execution_id, {columns} FROM execution_payloads "
    "WHERE project_id = {{project:String}} AND execution_id IN {{ids:Array(String)}} "
    "LIMIT 1 BY execution_id"
)
BLOBS = ("trace_spans", "final_output")
SPANS_AND_OUTPUT = PAYLOAD_ROWS.format(columns="trace_spans, final_output")
STATE = PAYLOAD_ROWS.format(columns="workflow_state")
# Large values the page query left out, by sort-key position (the primary key finds them).
WITHHELD = (
    "SELECT ingest_ts, partition, offset, files, cost_json FROM executions "
    "WHERE project_id = {project:String} AND ingest_ts IN {ts:Array(Int64)}"
)


def raw(text: str) -> Any:
    """A stored JSON text as it is, or JSON null for an empty one."""
    return msgspec.Raw(text.encode()) if text else NULL


def query_limits(call: Call) -> QueryLimits:
    """The resource limits of a logs query."""
    return call.deps.settings.query_limits_for("logs")


def blob_columns(asked: tuple[bool, bool], inline: int | None) -> str:
    """The asked-for blobs; with `inline`, only up to that many bytes and with their lengths."""
    columns = []
    for name, wanted in zip(BLOBS, asked, strict=True):
        if not wanted:
            columns.append(f"'' AS {name}" + (", 0" if inline is not None else ""))
        elif inline is not None:
            limit = int(inline)  # a literal: see logsql.build_sql
            columns.append(f"if(length({name}) <= {limit}, {name}, ''), length({name})")
        else:
            columns.append(name)
    return ", ".join(columns)


async def payloads(
    call: Call, project_id: str, page: list[tuple[Any, ...]], spent: list[int], q: logquery.LogQuery
) -> tuple[dict[str, ExecutionData], int]:
    """The asked-for blobs of a page, and how many of its rows fit the byte bound with them.

    `spent` holds each row's size without blobs; blobs too long to come back inline are read
    again, by id, only for the rows that fit.
    """
    asked = (q.trace_spans, q.final_output)
    if not page or not any(asked):
        return {}, len(page)
    max_bytes = call.deps.settings.logs_page_max_bytes
    inline = logsql.inline_bytes(max_bytes, len(page))
    ids = [r[2] for r in page]
    found = await call.deps.clickhouse.rows(
        PAYLOAD_ROWS.format(columns=blob_columns(asked, inline)),
        {"project": project_id, "ids": ids},
        limits=query_limits(call), narrow=NARROW,
    )  # fmt: skip
    blobs = {row[0]: [row[1], row[3]] for row in found}
    lengths = {row[0]: (int(row[2]), int(row[4])) for row in found}
    sizes = [size + sum(lengths.get(i, (0, 0))) for size, i in zip(spent, ids, strict=True)]
    fits = logsql.fitting(sizes, max_bytes)
    missing = [i for i in ids[:fits] if max(lengths.get(i, (0, 0))) > inline]
    if missing:
        again = await call.deps.clickhouse.rows(
            PAYLOAD_ROWS.format(columns=blob_columns(asked, None)),
            {"project": project_id, "ids": missing}, limits=query_limits(call), narrow=NARROW,
        )  # fmt: skip
        blobs |= {row[0]: [row[1], row[2]] for row in again}
    data = {
        execution_id: ExecutionData(
            traceSpans=raw(trace) if q.trace_spans else msgspec.UNSET,
            finalOutput=raw(final) if q.final_output else msgspec.UNSET,
        )
        for execution_id, (trace, final) in blobs.items()
    }
    return data, fits


async def restore_withheld(
    call: Call, project_id: str, page: list[tuple[Any, ...]], full: bool, inline: int
) -> list[tuple[Any, ...]]:
    """The page with the large `files`/`cost_json` values the page query left out."""
    short = [r for r in page if logsql.withheld(r, full, inline)]
    if not short:
        return page
    found = await call.deps.clickhouse.rows(
        WITHHELD, {"project": project_id, "ts": sorted({r[10] for r in short})},
        limits=query_limits(call), narrow=NARROW,
    )  # fmt: skip
    values = {(ts, p, off): (files, cost) for ts, p, off, files, cost in found}
    restored = []
    for row in page:
        if (got := values.get((row[10], row[11], row[12]))) and logsql.withheld(row, full, inline):
            fixed = list(row)
            fixed[9] = got[0]
            if full:
                fixed[15] = got[1]
            row = tuple(fixed)
        restored.append(row)
    return restored
