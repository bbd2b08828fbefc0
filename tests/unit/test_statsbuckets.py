"""The stats API's buckets: windows aligned to UTC, every bucket filled, health strips."""

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.api.statsbuckets import (
    HEALTH_BUCKETS,
    RANGES,
    BucketRow,
    WorkflowRow,
    error_rate,
    health,
    series,
    totals,
    window,
    workflow_stats,
)

NOW_S = int(datetime(2026, 11, 23, 10, 37, 12, tzinfo=UTC).timestamp())
NAN = float("nan")


def _at(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())


def _row(start: int, executions: int, errors: int = 0, whole: bool = False) -> BucketRow:
    return BucketRow(whole, start, executions, errors, [100.4, 900.6], 0.1 * executions)


@pytest.mark.parametrize(
    ("name", "bucket_s", "first", "last"),
    [
        ("24h", 3600, "2026-11-22T11:00", "2026-11-23T10:00"),
        ("7d", 21600, "2026-11-16T12:00", "2026-11-23T06:00"),
        ("30d", 86400, "2026-10-25T00:00", "2026-11-23T00:00"),
    ],
)
def test_a_window_ends_with_the_bucket_that_holds_now(
    name: str, bucket_s: int, first: str, last: str
) -> None:
    win = window(name, NOW_S)  # type: ignore[arg-type]
    assert win.bucket_s == bucket_s and len(win.starts) == RANGES[name][1]  # type: ignore[index]
    assert (win.starts[0], win.starts[-1]) == (_at(first), _at(last))
    assert win.from_s == _at(first) and win.until_s == _at(last) + bucket_s


@given(st.integers(0, 2**33), st.sampled_from(sorted(RANGES)))
def test_windows_are_contiguous_aligned_and_hold_now(now_s: int, name: str) -> None:
    win = window(name, now_s)  # type: ignore[arg-type]
    assert all(start % win.bucket_s == 0 for start in win.starts)
    assert all(b - a == win.bucket_s for a, b in zip(win.starts, win.starts[1:], strict=False))
    assert win.starts[-1] <= now_s < win.until_s


def test_every_bucket_is_present_with_zeros_where_nothing_completed() -> None:
    win = window("24h", NOW_S)
    rows = [_row(win.starts[-1], 4, 1), _row(win.starts[2], 2), _row(0, 6, 1, whole=True)]
    filled = series(win, rows)
    assert [b.executions for b in filled] == [0, 0, 2, *[0] * 20, 4]
    assert filled[0].start == "2026-11-22T11:00:00.000Z" and filled[-1].errors == 1
    assert (filled[-1].p50DurationMs, filled[-1].p95DurationMs) == (100, 901)
    assert filled[1].p50DurationMs == 0 and filled[1].costUsd == 0.0


def test_rows_outside_the_window_are_left_out() -> None:
    win = window("24h", NOW_S)
    filled = series(win, [_row(win.starts[0] - 3600, 3), _row(win.until_s, 3)])
    assert sum(b.executions for b in filled) == 0


def test_totals_come_from_the_whole_range_row_and_are_zero_without_one() -> None:
    whole = BucketRow(True, 0, 8, 2, [250.0, 820.0], 0.08)
    assert totals([_row(NOW_S, 1), whole]).errorRate == 0.25
    assert totals([whole]).p95DurationMs == 820 and totals([whole]).costUsd == 0.08
    empty = totals([BucketRow(True, 0, 0, 0, [NAN, NAN], 0.0)])
    assert empty.executions == 0 and empty.errorRate == 0.0 and empty.p50DurationMs == 0
    assert totals([]) == empty


def test_error_rate_is_rounded_and_zero_without_executions() -> None:
    assert error_rate(1, 3) == 0.3333 and error_rate(0, 0) == 0.0 and error_rate(2, 2) == 1.0


def _workflow(starts: list[int], executions: list[int], errors: list[int]) -> WorkflowRow:
    last = datetime(2026, 11, 23, 10, 5, 0, 123000)  # naive, as ClickHouse may return it
    return WorkflowRow("wf-a", sum(executions), sum(errors), last, starts, executions, errors)


def test_health_is_the_last_24_buckets_with_none_where_it_did_not_run() -> None:
    win = window("7d", NOW_S)
    row = _workflow([win.starts[0], win.starts[-1], win.starts[-3]], [5, 4, 2], [5, 1, 0])
    strip = health(win, row)
    assert len(strip) == HEALTH_BUCKETS
    assert strip == [*[None] * 21, 0.0, None, 0.25]  # the first bucket is older than the strip


def test_a_workflow_carries_its_rate_last_execution_and_strip() -> None:
    win = window("24h", NOW_S)
    found = workflow_stats(win, _workflow([win.starts[0]], [4], [1]))
    assert (found.workflowId, found.executions, found.errors, found.errorRate) == (
        "wf-a", 4, 1, 0.25,
    )  # fmt: skip
    assert found.lastExecutionAt == "2026-11-23T10:05:00.123Z"
    assert found.health[0] == 0.25 and found.health[1:] == [None] * 23
