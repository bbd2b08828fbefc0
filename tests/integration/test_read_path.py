"""The read path on chDB: byte-bounded logs pages, query limits, and the runs/workflows tables."""

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from services.api import logblobs, logquery, logrows, runs, workflows
from services.api.visibility import Visibility
from services.common import chschema
from services.common.clickhouse import ClickHouse
from services.common.config import QueryLimits
from services.common.errors import QueryTooBroad, Unavailable
from services.logsink.rows import EXECUTION_COLUMNS, PAYLOAD_COLUMNS, STARTED_COLUMNS
from services.logsink.watermarks import PartitionClock, load_clock, publish

PROJECT = "prj_readpath"
START = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
WIDE = QueryLimits(max_execution_seconds=30, max_memory_bytes=0, max_rows_to_read=0)


@pytest.fixture
async def ch(tmp_path: Path) -> AsyncIterator[ClickHouse]:
    """chDB with the schema of the first two migrations only (the state before migration 3)."""
    client = ClickHouse(f"chdb://{tmp_path / 'ch'}")
    await client.migrate(chschema.MIGRATIONS[:2])
    try:
        yield client
    finally:
        client.close()


def _completed(n: int, files: str = "null", workflow: str = "wf-a") -> tuple[Any, ...]:
    ingest_us = time.time_ns() // 1000 + n
    started = START + timedelta(minutes=n)
    return (
        PROJECT, ingest_us, 0, n, f"log_{n:04d}", f"ex-{n:04d}", workflow, "Flow", "", "",
        "api", "info", "success", started, started + timedelta(seconds=2), 2000, 0.01,
        '{"total":0.01}', ["gpt-4o"], files, 0, 1, 30,
    )  # fmt: skip


def _started(n: int, workflow: str = "wf-a") -> tuple[Any, ...]:
    started = START + timedelta(minutes=n)
    ingest_us = time.time_ns() // 1000 + n
    return (PROJECT, f"ex-{n:04d}", workflow, "Flow", "", "api", "async", started, ingest_us, 30)


async def _insert_executions(ch: ClickHouse, rows: list[tuple[Any, ...]]) -> None:
    await ch.insert("executions", rows, EXECUTION_COLUMNS)


async def test_migration_backfills_runs_and_adds_workflow_projections(ch: ClickHouse) -> None:
    await ch.insert("executions_started", [_started(1), _started(2), _started(3)], STARTED_COLUMNS)
    await _insert_executions(ch, [_completed(1), _completed(2)])
    assert (await ch.migrate())[0] == 3  # and any later ones
    rows = await ch.rows(
        runs.runs_sql(None, None, after=False), {"project": PROJECT, "workflow": None, "fetch": 10}
    )
    latest = runs.latest_per_run([runs.RunRow(*r) for r in rows])
    assert [(r[0], r[3]) for r in latest] == [
        ("ex-0003", "running"), ("ex-0002", "success"), ("ex-0001", "success"),
    ]  # fmt: skip
    # New rows reach `runs` through the views; the workflow counts come from the projections.
    await ch.insert("executions_started", [_started(4, "wf-b")], STARTED_COLUMNS)
    await _insert_executions(ch, [_completed(3)])
    await ch.command("ALTER TABLE executions MATERIALIZE PROJECTION workflow_totals")
    forced = {"force_optimize_projection": 1}
    page = await ch.rows(
        workflows._PAGE.replace("{only}", ""),
        {"project": PROJECT, "after": "", "limit": 10},
        settings=forced,
    )
    assert [(w, int(c)) for w, _last, c in page] == [("wf-a", 3), ("wf-b", 0)]
    rows = await ch.rows(
        runs.runs_sql("running", None, after=False),
        {"project": PROJECT, "workflow": None, "fetch": 10},
    )
    latest = runs.latest_per_run([runs.RunRow(*r) for r in rows])
    assert [(r[0], r[3]) for r in latest if r[3] == "running"] == [("ex-0004", "running")]
    assert len(rows) == 7 and [r[0] for r in latest] == ["ex-0004", "ex-0003", "ex-0002", "ex-0001"]


async def test_large_values_are_left_out_of_the_page_query_and_read_back(
    ch: ClickHouse,
) -> None:
    await ch.migrate()
    files = '[{"name":"' + "x" * chschema.PAGE_ROW_FILES_BYTES + '"}]'
    await _insert_executions(ch, [_completed(n, files if n % 2 else "null") for n in range(10)])
    q = logquery.parse_query({"order": "asc", "limit": "5"}, PROJECT, b"k" * 32)
    sql, params = logquery.build_sql(PROJECT, q, 2**62, inline_bytes=1024)
    rows = logrows.named_rows(await ch.rows(sql, params), full=False)
    assert [r.files for r in rows] == ["null", "", "null", "", "null", ""]
    assert [r.files_bytes for r in rows] == [4, len(files)] * 3
    assert [logrows.withheld(r) for r in rows] == [False, True] * 3
    sizes = [logrows.row_bytes(r) for r in rows[:5]]
    assert logquery.fitting(sizes, 9000) == 3
    found = await ch.rows(logblobs._WITHHELD, {"project": PROJECT, "ts": [rows[1].ingest_ts]})
    assert [(r[:3], r[3]) for r in found] == [(tuple(rows[1][10:13]), files)]


def _expected(row: tuple[Any, ...]) -> logrows.LogRow:
    """The page row of an inserted `_completed` row, `files` as the page query gives it."""
    files = row[19]
    size = len(files.encode())
    return logrows.LogRow(
        row[4], row[6], row[5], row[11], row[10], int(row[13].timestamp() * 1000),
        int(row[14].timestamp() * 1000), row[15], row[16],
        files if size <= chschema.PAGE_ROW_FILES_BYTES else "", row[1], row[2], row[3], size,
    )  # fmt: skip


async def test_page_rows_are_the_same_for_rows_written_before_and_after_their_migration(
    ch: ClickHouse,
) -> None:
    # Values JSON must escape, non-ASCII text, and a `files` just under and just over the bound.
    tricky = '[{"name":"r\u00e9sum\u00e9 \\ "q" \u2603","url":"https://x/a/b"}]'
    edge = '["' + "e" * (chschema.PAGE_ROW_FILES_BYTES - 4) + '"]'
    before = [
        _completed(0, tricky, workflow='wf "é"'),
        _completed(1, edge),
        _completed(2, edge + " "),
    ]
    await _insert_executions(ch, before)
    assert 5 in await ch.migrate()
    after = [_completed(n, f) for n, f in ((3, tricky), (4, edge), (5, edge + " "), (6, "null"))]
    await _insert_executions(ch, after)
    # Every active part has the column written (the migration materialises it in old parts).
    parts = await ch.rows(
        "SELECT name, has(groupArray(column), 'page_row') FROM system.parts_columns "
        "WHERE table = 'executions' AND active GROUP BY name"
    )
    assert len(parts) >= 2 and all(has for _name, has in parts)
    q = logquery.parse_query({"order": "asc"}, PROJECT, b"k" * 32)
    sql, params = logquery.build_sql(PROJECT, q, 2**62, inline_bytes=1024)
    rows = logrows.named_rows(await ch.rows(sql, params), full=False)
    assert rows == [_expected(r) for r in before + after]
    assert [logrows.withheld(r) for r in rows] == [False, False, True] * 2 + [False]
    full = logquery.parse_query({"order": "asc", "details": "full"}, PROJECT, b"k" * 32)
    sql, params = logquery.build_sql(PROJECT, full, 2**62, inline_bytes=1024)
    detailed = logrows.named_rows(await ch.rows(sql, params), full=True)
    assert [(*d[:13], d.files_bytes) for d in detailed] == [tuple(r) for r in rows]
    assert [(d.workflow_name, d.cost_json, d.cost_json_bytes) for d in detailed] == [
        ("Flow", '{"total":0.01}', 14)
    ] * 7


async def test_blobs_too_long_for_inline_come_back_by_id(ch: ClickHouse) -> None:
    now_us = time.time_ns() // 1000
    blob = '"' + "y" * 4000 + '"'
    payloads = [
        (PROJECT, f"ex-{n:04d}", now_us, blob if n else '"s"', "", "", 30) for n in range(3)
    ]
    await ch.insert("execution_payloads", payloads, PAYLOAD_COLUMNS)
    ids = [f"ex-{n:04d}" for n in range(3)]
    inline = logblobs._PAYLOAD_ROWS.format(columns=logblobs._blob_columns((True, False), 1024))
    found = sorted(await ch.rows(inline, {"project": PROJECT, "ids": ids}))
    assert [(r[0], r[1], r[2], r[3], r[4]) for r in found] == [
        ("ex-0000", '"s"', 3, "", 0), ("ex-0001", "", 4002, "", 0), ("ex-0002", "", 4002, "", 0),
    ]  # fmt: skip
    again = logblobs._PAYLOAD_ROWS.format(columns=logblobs._blob_columns((True, False), None))
    found = await ch.rows(again, {"project": PROJECT, "ids": ["ex-0001"]})
    assert found == [("ex-0001", blob, "")]


async def test_query_limits_become_app_errors(ch: ClickHouse) -> None:
    await _insert_executions(ch, [_completed(n) for n in range(50)])
    sql = "SELECT workflow_id, count() FROM executions GROUP BY workflow_id"
    few_rows = QueryLimits(max_execution_seconds=30, max_memory_bytes=0, max_rows_to_read=5)
    with pytest.raises(QueryTooBroad) as broad:
        await ch.rows(sql, limits=few_rows, narrow="filter by workflowId")
    assert broad.value.status == 400 and broad.value.message.endswith(": filter by workflowId.")
    no_memory = QueryLimits(max_execution_seconds=30, max_memory_bytes=1, max_rows_to_read=0)
    with pytest.raises(Unavailable) as busy:
        await ch.rows(
            "SELECT length(groupArray(toString(number))) FROM numbers(2000000)", limits=no_memory
        )
    assert busy.value.status == 503 and busy.value.retry_after_s > 0
    assert "memory" in busy.value.message
    no_time = QueryLimits(max_execution_seconds=1e-6, max_memory_bytes=0, max_rows_to_read=0)
    with pytest.raises(Unavailable) as slow:
        await ch.rows(sql, limits=no_time)
    assert "longer" in slow.value.message
    assert await ch.rows(sql, limits=WIDE) == [("wf-a", 50)]


async def test_visibility_follows_a_sink_in_this_process_and_else_reads_clickhouse(
    ch: ClickHouse,
) -> None:
    clock = PartitionClock()
    await load_clock(ch, clock, [0, 1])
    clock.advance(0, 500)
    clock.advance(1, 700)
    owns_all = [True]

    def local(partitions: int) -> int | None:
        return clock.bound(set(range(partitions))) if owns_all[0] else None

    visibility = Visibility(ch, 2, ttl_s=0)
    visibility.follow(local)
    assert await visibility.bound() == 0  # nothing published yet: nothing is final
    await publish(ch, clock)
    assert await visibility.bound() == 500  # as soon as it is written, without a read
    clock.advance(0, 900)
    await publish(ch, clock)
    assert await visibility.bound() == 700
    owns_all[0] = False  # partitions moved to another member: the table decides
    clock.advance(1, 800)  # advanced here but never written: not visible
    assert await visibility.bound() == 700
    visibility.unfollow(lambda _n: None)  # another sink's: still following this one
    owns_all[0] = True
    assert await visibility.bound() == 700
    restarted = PartitionClock()
    await load_clock(ch, restarted, [0, 1])
    assert restarted.bound({0, 1}) == 700 and restarted.stamp(1, 1) == 701
    visibility.unfollow(local)
    await ch.insert("sink_watermarks", [("executions", 1, 1000)], ("topic", "partition", "ts"))
    assert await visibility.bound() == 900
