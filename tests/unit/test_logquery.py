"""The logs query: parameter validation, filter-bound cursors, allow-listed SQL."""

import msgspec
import pytest

from schemas.logs import ExecutionData
from services.api import logquery, logrows
from services.api.logquery import Filters, Position, build_sql, parse_filters, parse_query
from services.api.logrows import FullLogRow, LogRow
from services.api.logs import log_item
from services.common import chschema
from services.common.cursor import derive_key
from services.common.errors import InvalidCursor, InvalidInput

KEY = derive_key("k", "cursor")


def test_defaults() -> None:
    q = parse_query({}, "prj_a", KEY)
    assert (q.order, q.limit, q.full, q.trace_spans, q.final_output) == (
        "desc",
        100,
        False,
        False,
        False,
    )
    assert q.filters == Filters()


def test_comma_lists_are_trimmed_and_deduplicated() -> None:
    f = parse_filters({"workflowIds": " a, b,a ,", "triggers": "api"})
    assert f.workflowIds == ("a", "b")
    assert f.triggers == ("api",)


def test_date_bounds_are_inclusive_and_dates_cover_whole_days() -> None:
    f = parse_filters({"startDate": "2025-01-01", "endDate": "2025-01-01"})
    assert f.startMs == 1735689600000
    assert f.endMs == 1735689600000 + 86_400_000 - 1
    exact = parse_filters(
        {"startDate": "2025-01-01T12:00:00.500Z", "endDate": "2025-01-01T12:00:00.500Z"}
    )
    assert exact.startMs == exact.endMs == 1735732800500


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"level": "warn"}, "level"),
        ({"startDate": "yesterday"}, "startDate"),
        ({"minDurationMs": "-1"}, "minDurationMs"),
        ({"minDurationMs": "1.5"}, "minDurationMs"),
        ({"maxCost": "nan"}, "maxCost"),
        ({"minCost": "abc"}, "minCost"),
        ({"workflowIds": ","}, "workflowIds"),
        ({"minDurationMs": "10", "maxDurationMs": "5"}, "maxDurationMs"),
        ({"startDate": "2025-02-01", "endDate": "2025-01-01"}, "endDate"),
        ({"executionId": "x" * 300}, "executionId"),
    ],
)
def test_malformed_values_name_the_field(params: dict[str, str], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_filters(params)
    assert caught.value.details is not None
    assert [d.field for d in caught.value.details] == [field]


def test_every_bad_parameter_is_reported_at_once() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_filters({"level": "x", "minCost": "y"})
    assert caught.value.details is not None
    assert {d.field for d in caught.value.details} == {"level", "minCost"}


@pytest.mark.parametrize(("params", "field"), [
    ({"limit": "0"}, "limit"), ({"limit": "1001"}, "limit"), ({"order": "up"}, "order"),
    ({"details": "all"}, "details"), ({"includeTraceSpans": "yes"}, "includeTraceSpans"),
])  # fmt: skip
def test_paging_parameters_are_checked(params: dict[str, str], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_query(params, "prj_a", KEY)
    assert caught.value.details is not None and caught.value.details[0].field == field


def test_limit_bounds_are_inclusive() -> None:
    assert parse_query({"limit": "1"}, "p", KEY).limit == 1
    assert parse_query({"limit": "1000"}, "p", KEY).limit == 1000


def test_cursor_is_bound_to_project_filters_and_order() -> None:
    q = parse_query({"order": "asc", "level": "error"}, "prj_a", KEY)
    token = logquery.make_cursor("prj_a", q, Position(5, 1, 7), KEY)
    resumed = parse_query({"order": "asc", "level": "error", "cursor": token}, "prj_a", KEY)
    assert resumed.after == Position(5, 1, 7)
    for params, project in [
        ({"order": "asc", "level": "info", "cursor": token}, "prj_a"),
        ({"order": "desc", "level": "error", "cursor": token}, "prj_a"),
        ({"order": "asc", "level": "error", "cursor": token}, "prj_b"),
        ({"order": "asc", "level": "error", "cursor": token[:-2] + "xx"}, "prj_a"),
    ]:
        with pytest.raises(InvalidCursor):
            parse_query(params, project, KEY)


def test_limit_may_change_between_pages() -> None:
    q = parse_query({"order": "asc"}, "p", KEY)
    token = logquery.make_cursor("p", q, Position(1, 0, 0), KEY)
    assert parse_query({"order": "asc", "limit": "7", "cursor": token}, "p", KEY).limit == 7


def test_sql_binds_every_value_and_uses_keyset_paging() -> None:
    evil = "x' OR 1=1 --"
    q = parse_query(
        {"executionId": evil, "workflowIds": "a,b", "model": "gpt", "order": "asc"}, "p", KEY
    )
    q = logquery.LogQuery(filters=q.filters, order="asc", limit=10, after=Position(9, 2, 3))
    sql, params = build_sql("prj_'x", q, 1000, inline_bytes=4096)
    assert evil not in sql and "prj_'x" not in sql
    assert params["executionId"] == evil and params["project"] == "prj_'x"
    assert params["workflowIds"] == ["a", "b"] and params["limit"] == 11
    assert "OFFSET {" not in sql.upper()  # the `offset` column, never an OFFSET clause
    assert "ingest_ts < {wm:Int64}" in sql
    assert "(ingest_ts, partition, offset) > ({ats:Int64}, {ap:Int32}, {aoff:Int64})" in sql
    assert sql.endswith("LIMIT {limit:UInt32}") and "ORDER BY ingest_ts ASC" in sql


def test_resume_position_is_just_below_the_visibility_bound() -> None:
    resume = logquery.resume_position(1000)
    assert (resume.ts, resume.partition, resume.offset) == (1000, -1, -1)
    assert logquery.later(resume, Position(999, 5, 5)) == resume
    assert logquery.later(resume, Position(1000, 0, 0)) == Position(1000, 0, 0)


def test_large_values_come_back_inline_only_up_to_a_size_with_their_lengths() -> None:
    q = parse_query({"order": "desc", "limit": "1000", "details": "full"}, "p", KEY)
    sql, params = build_sql("p", q, 1000, inline_bytes=4096)
    assert params["limit"] == 1001
    assert sql.startswith(
        "SELECT page_row, workflow_name, workflow_description, "
        "if(length(cost_json) <= 4096, cost_json, ''), length(cost_json) FROM executions"
    )
    assert sql.endswith("LIMIT {limit:UInt32}") and "OVER" not in sql
    basic, _ = build_sql("p", parse_query({}, "p", KEY), 1000, inline_bytes=4096)
    # `files` is in page_row up to the schema's own bound (migration 5), its length after it.
    assert basic.startswith("SELECT page_row FROM executions")
    assert "if(length(files) <= 4096, files, '')" in chschema.PAGE_ROW[0]


def test_page_rows_decode_whatever_json_settings_wrote_them() -> None:
    plain = '["log_1","wf","ex","info","api",1735734896789,1735734897005,216,0.25,"null",7,0,3,4]'
    # A server set to quote 64-bit integers in JSON (output_format_json_quote_64bit_integers).
    quoted = plain.replace("1735734896789", '"1735734896789"').replace(",7,", ',"7",')
    full = [(plain, "Flow", "", '{"total":0.25}', 14)]
    expected = LogRow("log_1", "wf", "ex", "info", "api", 1735734896789, 1735734897005, 216, 0.25,
                      "null", 7, 0, 3, 4)  # fmt: skip
    assert logrows.named_rows([(plain,), (quoted,)], full=False) == [expected, expected]
    assert logrows.named_rows(full, full=True) == [
        FullLogRow(*expected[:13], "Flow", "", '{"total":0.25}', 4, 14)
    ]
    assert logrows.named_rows([], full=False) == []
    with pytest.raises(msgspec.ValidationError):
        logrows.named_rows([('["log_1"]',)], full=False)


def test_a_page_is_cut_where_it_would_pass_the_byte_bound() -> None:
    assert logquery.inline_bytes(8 * 1024 * 1024, 1001) == 4190
    assert logquery.inline_bytes(10, 1001) == logquery.INLINE_MIN_BYTES
    assert logquery.fitting([400, 400, 400], 1000) == 2
    assert logquery.fitting([5000, 10], 1000) == 1  # the first row always comes
    assert logquery.fitting([10, 10], 1000) == 2 and logquery.fitting([], 10) == 0
    row = LogRow("log_1", "wf", "ex", "info", "api", 0, 0, 1, 0.1, "", 7, 0, 0, 9000)
    assert logrows.row_bytes(row) == 5 + 2 + 2 + 3 + 256 + 9000
    assert logrows.withheld(row)  # '' with a length: left out of the page query
    assert not logrows.withheld(row._replace(files="[]", files_bytes=2))
    assert not logrows.withheld(row._replace(files_bytes=0))  # empty, not left out
    full = FullLogRow(*row[:13], "wf", "", "", 0, 0)
    assert not logrows.withheld(full)
    assert logrows.withheld(full._replace(cost_json_bytes=5000))


def test_basic_reads_only_what_the_contract_shows() -> None:
    # Basic items: id, workflowId, executionId, level, trigger, startedAt, endedAt,
    # totalDurationMs, cost.total and files (contract section 5), plus the cursor position.
    assert set(LogRow._fields) == {
        "log_id", "workflow_id", "execution_id", "level", "trigger", "started_at", "ended_at",
        "total_duration_ms", "cost_total", "files", "ingest_ts", "partition", "offset",
        "files_bytes",
    }  # fmt: skip
    # page_row is a LogRow, its fields in order (logrows decodes it as one).
    packed = chschema.PAGE_ROW[0].split("toJSONString((")[1]
    at = 0
    for name in LogRow._fields[:-1]:
        found = packed.find(name, at)
        assert found >= at, name
        at = found + len(name)
    assert packed[at:].startswith(", length(files)))")
    assert "workflow_state" not in logrows.select_list(full=True, inline_bytes=None)


def test_the_logs_routes_read_workflow_state_only_for_the_execution_route() -> None:
    from services.api import logblobs

    assert "workflow_state" not in logblobs._PAYLOAD_ROWS + logblobs.SPANS_AND_OUTPUT
    assert "workflow_state" in logblobs.STATE and "trace_spans" not in logblobs.STATE


def test_page_settings_follow_what_the_page_filters_on() -> None:
    by_id = parse_query({"executionId": "ex-1", "level": "error"}, "p", KEY)
    sql, _ = build_sql("p", by_id, 1000, inline_bytes=4096)
    # The row's sorting key from the by_execution projection, then the row by primary key.
    assert (
        "(ingest_ts, partition, offset) IN (SELECT ingest_ts, partition, offset FROM executions "
        "WHERE project_id = {project:String} AND execution_id = {executionId:String})"
    ) in sql
    assert sql.count("execution_id =") == 1  # not a second, bloom-filter condition outside
    assert logquery.page_settings(by_id) == {
        "max_threads": 1, "use_skip_indexes": 0,
    }  # fmt: skip
    plain = parse_query({"order": "asc"}, "p", KEY)
    assert logquery.page_settings(plain) == {"max_threads": 1, "optimize_use_projections": 0}
    scanning = parse_query({"model": "gpt-4o"}, "p", KEY)
    assert logquery.page_settings(scanning) == {"optimize_use_projections": 0}


def test_times_come_back_as_epoch_milliseconds() -> None:
    assert (
        "toUnixTimestamp64Milli(started_at), toUnixTimestamp64Milli(ended_at)"
        in (chschema.PAGE_ROW[0])
    )
    assert logrows.select_list(full=True, inline_bytes=None).startswith("page_row,")


def test_a_row_becomes_the_item_the_contract_lists() -> None:
    basic = LogRow(
        "log_1", "wf_1", "ex_1", "error", "api", 1735734896789, 1735734897005, 216, 0.25,
        '[{"name":"a.txt"}]', 10, 2, 7, 18,
    )  # fmt: skip
    encoded = msgspec.json.decode(msgspec.json.encode(log_item(basic, None)))
    assert encoded == {
        "id": "log_1", "workflowId": "wf_1", "executionId": "ex_1", "level": "error",
        "trigger": "api", "startedAt": "2025-01-01T12:34:56.789Z",
        "endedAt": "2025-01-01T12:34:57.005Z", "totalDurationMs": 216, "cost": {"total": 0.25},
        "files": [{"name": "a.txt"}],
    }  # fmt: skip
    full = FullLogRow(*basic[:9], "", *basic[10:13], "Nightly", "", '{"total":0.25,"input":0.1}')
    data = ExecutionData(traceSpans=msgspec.Raw(b"[]"), finalOutput=msgspec.UNSET)
    encoded = msgspec.json.decode(msgspec.json.encode(log_item(full, data)))
    assert encoded["workflow"] == {"id": "wf_1", "name": "Nightly", "description": None}
    assert encoded["cost"] == {"total": 0.25, "input": 0.1}
    assert encoded["files"] is None
    assert encoded["executionData"] == {"traceSpans": []}
