"""The large values of a logs page read apart from the page query: trace spans and final
output by execution id, and the `files`/`cost_json` values the page query left out."""

from typing import Any, NamedTuple

import msgspec

from schemas.logs import ExecutionData
from services.api import logquery, logrows
from services.api.logrows import FullLogRow, LogRow
from services.api.routing import Call
from services.common.config import QueryLimits

_PAYLOAD_ROWS = (
    "SELECT execution_id, {columns} FROM execution_payloads "
    "WHERE project_id = {{project:String}} AND execution_id IN {{ids:Array(String)}} "
    "LIMIT 1 BY execution_id"
)
_BLOBS = ("trace_spans", "final_output")
SPANS_AND_OUTPUT = _PAYLOAD_ROWS.format(columns="trace_spans, final_output")
STATE = _PAYLOAD_ROWS.format(columns="workflow_state")
# Large values the page query left out, by sort-key position (the primary key finds them).
_WITHHELD = (
    "SELECT ingest_ts, partition, offset, files, cost_json FROM executions "
    "WHERE project_id = {project:String} AND ingest_ts IN {ts:Array(Int64)}"
)
NARROW = "add startDate/endDate, workflowIds, level or executionId, or lower limit"


NULL = msgspec.Raw(b"null")


def raw_value(text: str) -> Any:
    """A stored JSON text as it is, null when empty."""
    return msgspec.Raw(text.encode()) if text else NULL


def query_limits(call: Call) -> QueryLimits:
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


async def payloads(
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
        limits=query_limits(call), narrow=NARROW,
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
            {"project": project_id, "ids": missing}, limits=query_limits(call), narrow=NARROW,
        )  # fmt: skip
        blobs |= {execution_id: (trace, final) for execution_id, trace, final in again}
    data = {
        execution_id: ExecutionData(
            traceSpans=raw_value(trace) if q.trace_spans else msgspec.UNSET,
            finalOutput=raw_value(final) if q.final_output else msgspec.UNSET,
        )
        for execution_id, (trace, final) in blobs.items()
    }
    return data, fits


async def restore_withheld(
    call: Call, project_id: str, page: list[LogRow | FullLogRow]
) -> list[LogRow | FullLogRow]:
    """The page with the large `files`/`cost_json` values the page query left out."""
    short = [r for r in page if logrows.withheld(r)]
    if not short:
        return page
    found = await call.deps.clickhouse.rows(
        _WITHHELD, {"project": project_id, "ts": sorted({r.ingest_ts for r in short})},
        limits=query_limits(call), narrow=NARROW,
    )  # fmt: skip
    values = {(ts, p, off): (files, cost) for ts, p, off, files, cost in found}
    restored: list[LogRow | FullLogRow] = []
    for row in page:
        got = values.get((row.ingest_ts, row.partition, row.offset))
        if got and logrows.withheld(row):
            files, cost_json = got
            if isinstance(row, FullLogRow):
                row = row._replace(files=files, cost_json=cost_json)
            else:
                row = row._replace(files=files)
        restored.append(row)
    return restored
