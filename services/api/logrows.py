"""The rows of the logs queries, with their columns named, and what each costs in a page (pure).

A page query (`logquery.build_sql`) selects `page_row` (ClickHouse migration 5): a `LogRow` as one
JSON array, `files` left out as '' past `chschema.PAGE_ROW_FILES_BYTES`. Full details add the
workflow's name and description, and the cost, left out past the query's `inline_bytes`, then its
length (`select_list`). A page is so cut by its real size before anything large is read; one log
read by id gets its cost whole, and a long `files` by a second read like a page's. Times are
epoch milliseconds, the form the items show: no datetime per value in between.
"""

from typing import Any, NamedTuple

import msgspec

ROW_OVERHEAD_BYTES = 256  # field names, times and numbers of one item


class LogRow(NamedTuple):
    """A row of the basic page query; `files_bytes` is the length of `files`, which comes back
    as '' when it is too long for `page_row`."""

    log_id: str
    workflow_id: str
    execution_id: str
    level: str
    trigger: str
    started_at: int  # epoch ms
    ended_at: int  # epoch ms
    total_duration_ms: int
    cost_total: float
    files: str
    ingest_ts: int
    partition: int
    offset: int
    files_bytes: int = 0


class FullLogRow(NamedTuple):
    """A row of the full page query, or of one log read by id: the basic columns, the
    workflow's name and description and the cost, then the lengths as in `LogRow`."""

    log_id: str
    workflow_id: str
    execution_id: str
    level: str
    trigger: str
    started_at: int  # epoch ms
    ended_at: int  # epoch ms
    total_duration_ms: int
    cost_total: float
    files: str
    ingest_ts: int
    partition: int
    offset: int
    workflow_name: str
    workflow_description: str
    cost_json: str
    files_bytes: int = 0
    cost_json_bytes: int = 0


# Not strict: a ClickHouse server set to quote 64-bit integers in JSON ("1700000000000") still
# decodes.
_page_rows = msgspec.json.Decoder(list[LogRow], strict=False)


def select_list(full: bool, inline_bytes: int | None) -> str:
    """The SELECT list of a page (or, `inline_bytes` None, of one log: its cost whole)."""
    if not full:
        return "page_row"
    cost = "cost_json"
    if inline_bytes is not None:
        # A literal, not a bound parameter: ClickHouse plans a parameter here noticeably slower.
        cost = f"if(length(cost_json) <= {int(inline_bytes)}, cost_json, '')"
    return f"page_row, workflow_name, workflow_description, {cost}, length(cost_json)"


def named_rows(rows: list[tuple[Any, ...]], full: bool) -> list[LogRow | FullLogRow]:
    """Rows of `build_sql` with their columns named, every `page_row` decoded in one call."""
    basic: list[LogRow] = _page_rows.decode("[" + ",".join([row[0] for row in rows]) + "]")
    if not full:
        return list(basic)
    # page_row, workflow_name, workflow_description, cost_json, length(cost_json)
    return [
        FullLogRow._make((*b[:13], *r[1:4], b.files_bytes, r[4]))
        for b, r in zip(basic, rows, strict=True)
    ]


def row_bytes(row: LogRow | FullLogRow) -> int:
    """What a row of `build_sql(..., inline_bytes)` costs in the response, blobs excluded."""
    fixed = len(row.log_id) + len(row.workflow_id) + len(row.execution_id) + len(row.trigger)
    fixed += ROW_OVERHEAD_BYTES
    if isinstance(row, LogRow):
        return int(fixed + row.files_bytes)
    extra = len(row.workflow_name) + len(row.workflow_description)
    return int(fixed + extra + row.files_bytes + row.cost_json_bytes)


def withheld(row: LogRow | FullLogRow) -> bool:
    """Whether the page query left out a large value of this row ('' with a length)."""
    if not row.files and row.files_bytes > 0:
        return True
    return isinstance(row, FullLogRow) and not row.cost_json and row.cost_json_bytes > 0
