"""Inserting a batch into ClickHouse: executions already stored are found first, and rows
ClickHouse refuses for their data are split off, so that only their records are dead-lettered."""

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from aiokafka.structs import ConsumerRecord

from services.common.clickhouse import ClickHouse, RefusedData
from services.common.kafka import describe_error
from services.logsink import rows
from services.logsink.batch import TABLES, Batch

DeadLetter = Callable[[ConsumerRecord[bytes, bytes], BaseException | str], Awaitable[None]]

_COLUMNS = {
    "delivery_attempts": rows.ATTEMPT_COLUMNS,
    "alerts": rows.ALERT_COLUMNS,
    "alert_acks": rows.ACK_COLUMNS,
    "execution_payloads": rows.PAYLOAD_COLUMNS,
    "executions_started": rows.STARTED_COLUMNS,
    "executions": rows.EXECUTION_COLUMNS,
}
# Raised while encoding rows: the rows are at fault, like a ClickHouse parse error.
_ENCODE_ERRORS = (msgspec.EncodeError, TypeError, ValueError, OverflowError, RecursionError)
_INSERT_SETTINGS = {
    "deduplicate_blocks_in_dependent_materialized_views": 1,
    "date_time_input_format": "best_effort",
}
# Two plain IN sets, filtered to exact pairs in Python: a tuple IN set of ~20k keys falls off
# a cliff (seconds) once the projection is considered, while this stays ~0.1 s.
_EXISTING = (
    "SELECT project_id, execution_id FROM executions "
    "WHERE project_id IN {projects:Array(String)} AND execution_id IN {ids:Array(String)}"
)
_EXISTING_INLINE = (
    "SELECT project_id, execution_id FROM executions WHERE project_id IN {projects} "
    "AND execution_id IN (SELECT arrayJoin(splitByChar('\\0', {ids})))"
)


def _quoted(value: str) -> str:
    """`value` as a quoted ClickHouse literal: only the quote and the backslash need escaping,
    and a NUL is written `\\0`."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'").replace("\0", "\\0") + "'"


def existing_inline(projects: list[str], ids: list[str]) -> str | None:
    """`_EXISTING` with its values inlined, None when they cannot be (a value holds a NUL).

    Binding ~10k ids through clickhouse-connect escapes them a character at a time in Python,
    holding the GIL that the API needs; built here it is a few C string operations. The ids go
    as one NUL-separated string that ClickHouse splits, not as a tuple of literals, which it
    parses one by one (profiled: 30-40 ms of a lookup of 10k ids; the lookup took 18 ms instead
    of 43-73 ms for a project of 8k rows, and 44 ms instead of 77-110 ms for one of 2M).
    """
    joined = "\0".join(ids)
    if joined.count("\0") != len(ids) - 1 or any("\0" in project for project in projects):
        return None
    project_list = "(" + ",".join(map(_quoted, projects)) + ")"
    return _EXISTING_INLINE.format(projects=project_list, ids=_quoted(joined))


def without(
    data: list[tuple[Any, ...]], origins: list[int], rejected: dict[int, str]
) -> tuple[list[tuple[Any, ...]], list[int]]:
    """The rows (and their origins) that do not come from a `rejected` record."""
    if not rejected:
        return data, origins
    keep = [i for i, origin in enumerate(origins) if origin not in rejected]
    return [data[i] for i in keep], [origins[i] for i in keep]


async def stored_keys(ch: ClickHouse, batch: Batch) -> set[tuple[str, str]]:
    """The (project, execution) pairs of the batch's executions that are stored already."""
    keys = {(row[0], row[5]) for row in batch.executions}
    if not keys:
        return set()
    projects, ids = sorted({p for p, _ in keys}), sorted({e for _, e in keys})
    inlined = existing_inline(projects, ids)
    if inlined is None:
        found = await ch.rows(_EXISTING, {"projects": projects, "ids": ids})
    else:
        found = await ch.rows(inlined, settings={"max_query_size": len(inlined) + 1024})
    return {(p, e) for p, e in found} & keys


async def write(ch: ClickHouse, batch: Batch, scope: str, dead_letter: DeadLetter) -> None:
    """Insert every table of the batch, then dead-letter the records behind refused rows.

    A record with a refused row loses its rows in the tables written after (`executions`
    last); rows written before are keyed, replaced if the record is ever sent again."""
    rejected: dict[int, str] = {}
    for table in TABLES:
        data, origins = without(batch.rows(table), batch.origins[table], rejected)
        if data:
            rejected |= await store(ch, table, data, origins, scope + batch.token(table))
    for index in sorted(rejected.keys() - batch.rejected.keys()):
        await dead_letter(batch.sources[index], rejected[index])
        batch.rejected[index] = rejected[index]
        batch.dead_letters += 1
    # Last: a retry of this method (the broker failed above) must insert the same rows.
    batch.executions, batch.origins["executions"] = without(
        batch.executions, batch.origins["executions"], rejected
    )


async def store(
    ch: ClickHouse, table: str, data: list[tuple[Any, ...]], origins: list[int], token: str
) -> dict[int, str]:
    """Insert rows; when ClickHouse refuses them for their data, split them in halves until
    the refused rows are found. Returns their origins with the reason; the rest is stored."""
    settings = {**_INSERT_SETTINGS, "insert_deduplication_token": token}
    try:
        body = rows.encode_rows(data)
        await ch.insert_json(table, body, _COLUMNS[table], settings)
        return {}
    except (RefusedData, *_ENCODE_ERRORS) as exc:
        if len(data) == 1:
            return {origins[0]: f"{table}: {describe_error(exc)}"}
    middle = len(data) // 2
    rejected = await store(ch, table, data[:middle], origins[:middle], token + "/0")
    return rejected | await store(ch, table, data[middle:], origins[middle:], token + "/1")
