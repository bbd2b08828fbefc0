"""The runs listing's pure parts: the cursor binding, the keyset SQL, the latest row per run."""

from datetime import UTC, datetime

from services.api.runs import RunRow, cursor_binding, latest_per_run, runs_sql


def test_cursor_binding_covers_the_whole_project_id_status_and_workflow() -> None:
    base = cursor_binding("prj_0123456789abcdefghij", None, None)
    assert cursor_binding("prj_0123456789abcdefghiX", None, None) != base
    assert cursor_binding("prj_0123456789abcdefghij", "running", None) != base
    assert cursor_binding("prj_0123456789abcdefghij", "completed", None) != base
    assert cursor_binding("prj_0123456789abcdefghij", None, "wf-1") != base
    assert cursor_binding("prj_0123456789abcdefghij", None, "wf-1") != cursor_binding(
        "prj_0123456789abcdefghij", None, "wf-2"
    )
    assert cursor_binding("prj_0123456789abcdefghij", None, None) == base


def test_runs_sql_is_a_keyset_read_of_the_runs_table() -> None:
    for status in (None, "running", "completed"):
        for workflow in (None, "wf"):
            sql = runs_sql(status, workflow, after=True)
            assert "FROM runs WHERE project_id = {project:String}" in sql
            assert "UNION" not in sql and "FINAL" not in sql and "NOT IN" not in sql
            assert "executions" not in sql
            assert "ORDER BY started_at DESC, execution_id DESC, version DESC" in sql
            assert sql.rstrip().endswith("LIMIT {fetch:UInt32}")
            assert ("{workflow:String}" in sql) == (workflow is not None)
    assert "version" not in runs_sql("running", None, False).split("ORDER BY")[0]
    assert "version = 1" in runs_sql("completed", None, False)
    assert "{aid:String}" not in runs_sql(None, None, after=False)


def test_latest_per_run_keeps_the_first_row_of_each_run() -> None:
    t1, t2 = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)
    rows = [
        RunRow("b", "wf", "", "success", "api", "", t2, t2, 1),
        RunRow("b", "wf", "", "running", "api", "sync", t2, None, None),
        RunRow("a", "wf", "", "running", "api", "sync", t2, None, None),
        RunRow("a", "wf", "", "running", "api", "sync", t2, None, None),
        RunRow("c", "wf", "", "success", "api", "", t1, t1, 1),
    ]
    assert [(r[0], r[3]) for r in latest_per_run(rows)] == [
        ("b", "success"), ("a", "running"), ("c", "success"),
    ]  # fmt: skip
