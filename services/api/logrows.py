"""The rows of the logs queries, with their columns named, and what each costs in a page (pure).

The page query selects `BASIC_COLUMNS` or `FULL_COLUMNS` (see `logquery.build_sql`); with
`inline_bytes` it adds the lengths of the large columns, whose values it leaves out ('') past
that size, so a page is cut by its real size before anything large is read. Times come back as
epoch milliseconds (`select_list`), the form the items show: no datetime per value in between.
"""

from typing import Any, NamedTuple

ROW_OVERHEAD_BYTES = 256  # field names, times and numbers of one item


class LogRow(NamedTuple):
    """A row of the basic page query; `files_bytes` is the length of `files`, which comes back
    as '' when longer than the query's `inline_bytes` (0 without `inline_bytes`)."""

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
    workflow's name and description and the whole cost, then the lengths as in `LogRow`."""

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


BASIC_COLUMNS = LogRow._fields[:-1]
FULL_COLUMNS = FullLogRow._fields[:-2]
_AS_EPOCH_MS = ("started_at", "ended_at")


def select_list(names: tuple[str, ...]) -> tuple[str, ...]:
    """The SELECT expressions of these columns: times as epoch milliseconds."""
    return tuple(f"toUnixTimestamp64Milli({n})" if n in _AS_EPOCH_MS else n for n in names)


def named_rows(rows: list[tuple[Any, ...]], full: bool) -> list[LogRow | FullLogRow]:
    """Rows of `build_sql(..., inline_bytes)` with their columns named."""
    # `_make` checks the length and is the cheapest way to build a named tuple from a row.
    if full:
        return list(map(FullLogRow._make, rows))
    return list(map(LogRow._make, rows))


def row_bytes(row: LogRow | FullLogRow) -> int:
    """What a row of `build_sql(..., inline_bytes)` costs in the response, blobs excluded."""
    fixed = len(row.log_id) + len(row.workflow_id) + len(row.execution_id) + len(row.trigger)
    fixed += ROW_OVERHEAD_BYTES
    if isinstance(row, LogRow):
        return int(fixed + row.files_bytes)
    extra = len(row.workflow_name) + len(row.workflow_description)
    return int(fixed + extra + row.files_bytes + row.cost_json_bytes)


def withheld(row: LogRow | FullLogRow, inline: int) -> bool:
    """Whether a large value of this row was left out of the page query."""
    if isinstance(row, LogRow):
        return row.files_bytes > inline
    return row.files_bytes > inline or row.cost_json_bytes > inline
