"""The query benchmark's data set, generated server-side in ClickHouse and in PostgreSQL.

Row `n` (0-based, in completion order) is a pure function of `n`: every fifth row belongs to the
heavy project, the others go round-robin over the remaining projects, so both stores hold the
same rows per project; the other fields come from each store's own integer hash (same
distributions, not byte-identical). Only the heavy project's executions carry trace spans.
"""

import sys
import time
from pathlib import Path

import asyncpg
from msgspec import Struct

from services.common.clickhouse import ClickHouse

SPAN_US = 30 * 86_400 * 1_000_000  # completions spread over the last 30 days
MARGIN_US = 120 * 1_000_000  # the newest row completes this long before the data is made
CHUNK_ROWS = 1_000_000
WORKFLOWS_PER_PROJECT = 50
MODELS = (
    "gpt-4o", "gpt-4o-mini", "gpt-4.1", "o3-mini", "claude-3-5-sonnet", "claude-3-7-sonnet",
    "claude-3-5-haiku", "gemini-2.0-flash", "gemini-1.5-pro", "llama-3.1-70b",
)  # fmt: skip
TRIGGERS = ("api", "webhook", "schedule", "manual", "chat")
PG_SCHEMA = Path(__file__).with_name("pgschema.sql")
_STARTED = time.monotonic()


def progress(message: str) -> None:
    """A progress line on stderr (stdout carries only the result)."""
    print(f"[{time.monotonic() - _STARTED:7.1f}s] {message}", file=sys.stderr, flush=True)


class DataSet(Struct, frozen=True):
    """What to generate: how many rows, over how many projects, and where in time."""

    rows: int
    projects: int
    heavy_project: str
    base_us: int
    step_us: int

    @classmethod
    def plan(cls, rows: int, projects: int, heavy_project: str, now_us: int) -> "DataSet":
        """Rows ending MARGIN_US before `now_us`, evenly spaced over SPAN_US."""
        if projects < 2 or rows < 5 * projects:
            raise ValueError("need at least 2 projects and 5 rows per project")
        step_us = max(100, SPAN_US // rows)
        return cls(rows, projects, heavy_project, now_us - MARGIN_US - rows * step_us, step_us)

    @property
    def heavy_rows(self) -> int:
        """Rows of the heavy project (every fifth row: 20 %)."""
        return (self.rows + 4) // 5

    @property
    def newest_us(self) -> int:
        """Completion time of the newest row, in epoch microseconds."""
        return self.base_us + (self.rows - 1) * self.step_us

    def project_ids(self) -> list[str]:
        """The heavy project first, then the synthetic ones."""
        return [self.heavy_project, *(f"prj_bench_{k:04d}" for k in range(1, self.projects))]

    def heavy_execution_id(self, index: int) -> str:
        """The execution id of the heavy project's `index`-th row."""
        return f"exec-{(index % self.heavy_rows) * 5}"

    def chunks(self) -> list[tuple[int, int]]:
        """(first row, row count) of each generation statement."""
        return [(s, min(CHUNK_ROWS, self.rows - s)) for s in range(0, self.rows, CHUNK_ROWS)]


def _literals(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


# Shared by both dialects: concat() accepts numbers in ClickHouse and in PostgreSQL.
SPANS_SQL = """concat(
  '[{"id":"span-', n, '-1","name":"Agent 1","type":"agent","blockId":"agent-1","status":"',
  status, '","duration":', dur, ',"model":"', model, '","tokens":{"prompt":', n % 3000 + 100,
  ',"completion":', n % 700 + 20, ',"total":', n % 3000 + n % 700 + 120,
  '},"input":{"prompt":"Summarise the ticket and draft a reply"},"output":{"content":"Draft reply ',
  n, '"}},{"id":"span-', n, '-2","name":"Function 1","type":"function","blockId":"function-1",',
  '"status":"success","duration":12,"output":{"result":', n % 997,
  '}},{"id":"span-', n, '-3","name":"Response","type":"response","blockId":"response-1",',
  '"status":"success","duration":3,"output":{"status":200}}]')"""
FINAL_SQL = """concat('{"content":"Draft reply ', n, '","model":"', model, '"}')"""

_CH_ROWS = f"""
SELECT number AS n, n % 5 = 0 AS heavy,
  if(heavy, {{heavy:String}}, concat('prj_bench_',
     leftPad(toString((n - intDiv(n, 5) - 1) % {{others:UInt64}} + 1), 4, '0'))) AS project_id,
  {{base:Int64}} + toInt64(n) * {{step:Int64}} AS ingest_ts,
  cityHash64(n, 1) % {WORKFLOWS_PER_PROJECT} AS wf,
  cityHash64(n, 2) % 5 AS trig,
  cityHash64(n, 3) % 10 = 0 AS err,
  if(err, 'error', 'success') AS status,
  toUInt64(10 * pow(60000, (cityHash64(n, 4) % 1000000 + cityHash64(n, 5) % 1000000) / 2e6)) AS dur,
  round(0.0001 + cityHash64(n, 6) % 1000000 / 1e6 * 0.05, 6) AS cost,
  [{_literals(MODELS)}][cityHash64(n, 7) % 10 + 1] AS model,
  fromUnixTimestamp64Milli(intDiv(ingest_ts, 1000) - toInt64(cityHash64(n, 8) % 2000)) AS ended
FROM numbers({{start:UInt64}}, {{count:UInt64}})
"""

CH_EXECUTIONS = f"""
INSERT INTO executions (project_id, ingest_ts, partition, offset, log_id, execution_id,
  workflow_id, workflow_name, workflow_description, folder_id, trigger, level, status, started_at,
  ended_at, total_duration_ms, cost_total, cost_json, models, files, has_trace_spans,
  has_final_output, retention_days)
SELECT project_id, ingest_ts, toUInt16(n % 8), intDiv(n, 8),
  concat('log_', substring(lower(hex(MD5(toString(n)))), 1, 24)), concat('exec-', n),
  concat(project_id, '_wf', leftPad(toString(wf), 2, '0')), concat('Workflow ', wf),
  'Bench workflow', '', [{_literals(TRIGGERS)}][trig + 1], if(err, 'error', 'info'), status,
  ended - toIntervalMillisecond(dur), ended, dur, cost,
  concat('{{"total":', cost, ',"models":{{"', model, '":{{"total":', cost, '}}}}}}'),
  [model], 'null', heavy, heavy, 3650
FROM ({_CH_ROWS})
"""

CH_PAYLOADS = f"""
INSERT INTO execution_payloads (project_id, execution_id, ingest_ts, trace_spans, final_output,
  workflow_state, retention_days)
SELECT project_id, concat('exec-', n), ingest_ts, {SPANS_SQL}, {FINAL_SQL}, '', 3650
FROM ({_CH_ROWS}) WHERE heavy
"""

CH_WATERMARK = (
    "INSERT INTO sink_watermarks (topic, partition, ts) "
    "SELECT 'executions', toUInt16(number), {ts:Int64} FROM numbers({n:UInt64})"
)


async def fill_clickhouse(ch: ClickHouse, data: DataSet, partitions: int) -> None:
    """Executions, the heavy project's payloads, and watermarks above every row."""
    for start, count in data.chunks():
        params = {
            "heavy": data.heavy_project,
            "others": data.projects - 1,
            "base": data.base_us,
            "step": data.step_us,
            "start": start,
            "count": count,
        }
        await ch.command(CH_EXECUTIONS, params)
        await ch.command(CH_PAYLOADS, params)
        progress(f"clickhouse: {start + count:,} / {data.rows:,} rows")
    # Merged as a long-lived table mostly is, and so that no merge runs while queries are timed.
    for table in ("executions", "execution_payloads"):
        await ch.command(f"OPTIMIZE TABLE {table} FINAL")
        progress(f"clickhouse: {table} merged")
    await ch.command(CH_WATERMARK, {"ts": data.newest_us + 1, "n": partitions})


def _pg_hash(salt: int) -> str:
    return f"(hashint8extended(n, {salt}) & 2147483647)"


# OFFSET 0 keeps PostgreSQL from inlining the subqueries, which would compute every hash once
# per use instead of once per row.
PG_EXECUTIONS = f"""
INSERT INTO workflow_execution_logs (id, workspace_id, workflow_id, execution_id,
  state_snapshot_id, level, trigger, started_at, ended_at, total_duration_ms, execution_data,
  cost, files, created_at)
SELECT 'log_' || substr(md5(n::text), 1, 24), project_id, workflow_id, 'exec-' || n,
  'snap_' || workflow_id, CASE WHEN err THEN 'error' ELSE 'info' END,
  (ARRAY[{_literals(TRIGGERS)}])[trig::int + 1], ended - dur * interval '1 millisecond', ended,
  dur, CASE WHEN heavy THEN concat('{{"traceSpans":', {SPANS_SQL}, ',"finalOutput":',
  {FINAL_SQL}, '}}')::jsonb ELSE '{{}}'::jsonb END,
  jsonb_build_object('total', cost, 'models', jsonb_build_object(model,
  jsonb_build_object('total', cost))), NULL,
  to_timestamp(ingest_us / 1000000) + (ingest_us % 1000000) * interval '1 microsecond'
FROM (
  SELECT *, project_id || '_wf' || lpad(wf::text, 2, '0') AS workflow_id,
    CASE WHEN err THEN 'error' ELSE 'success' END AS status,
    to_timestamp((ingest_us / 1000 - lag_ms) / 1000.0) AS ended
  FROM (
    SELECT n, n % 5 = 0 AS heavy,
      CASE WHEN n % 5 = 0 THEN $3 ELSE 'prj_bench_' || lpad(((n - n / 5 - 1) % $4 + 1)::text,
        4, '0') END AS project_id,
      $5 + n * $6 AS ingest_us,
      {_pg_hash(1)} % {WORKFLOWS_PER_PROJECT} AS wf,
      {_pg_hash(2)} % 5 AS trig,
      {_pg_hash(3)} % 10 = 0 AS err,
      (10 * power(60000, ({_pg_hash(4)} % 1000000 + {_pg_hash(5)} % 1000000) / 2e6::float8))::int AS dur,
      round(0.0001 + {_pg_hash(6)} % 1000000 / 1e6 * 0.05, 6) AS cost,
      (ARRAY[{_literals(MODELS)}])[({_pg_hash(7)} % 10)::int + 1] AS model,
      {_pg_hash(8)} % 2000 AS lag_ms
    FROM generate_series($1::bigint, $2::bigint) AS n OFFSET 0
  ) AS raw OFFSET 0
) AS derived
"""

PG_WORKFLOWS = f"""
INSERT INTO workflow (id, workspace_id, name, description)
SELECT p || '_wf' || lpad(w::text, 2, '0'), p, 'Workflow ' || w, 'Bench workflow'
FROM unnest($1::text[]) AS p, generate_series(0, {WORKFLOWS_PER_PROJECT - 1}) AS w
"""


def pg_sections() -> dict[str, list[str]]:
    """The statements of pgschema.sql by section (tables, indexes)."""
    sections = {}
    for block in PG_SCHEMA.read_text().split("-- section: ")[1:]:
        name, _, body = block.partition("\n")
        sections[name.strip()] = [s.strip() for s in body.split(";") if _sql_only(s)]
    return sections


def _sql_only(statement: str) -> bool:
    return any(line.strip() and not line.strip().startswith("--") for line in statement.split("\n"))


async def fill_postgres(conn: asyncpg.Connection, data: DataSet) -> None:
    """Tables, rows, then indexes (cheaper after the load), then VACUUM ANALYZE."""
    sections = pg_sections()
    await conn.execute("SET maintenance_work_mem = '1GB'; SET synchronous_commit = off")
    for statement in sections["tables"]:
        await conn.execute(statement)
    await conn.execute(PG_WORKFLOWS, data.project_ids())
    for start, count in data.chunks():
        await conn.execute(
            PG_EXECUTIONS,
            start,
            start + count - 1,
            data.heavy_project,
            data.projects - 1,
            data.base_us,
            data.step_us,
        )
        progress(f"postgres: {start + count:,} / {data.rows:,} rows")
    for statement in sections["indexes"]:
        await conn.execute(statement)
        progress(f"postgres: {statement.split(' ON ')[0][:60]}")
    for table in ("workflow", "workflow_execution_logs"):
        await conn.execute(f"VACUUM (ANALYZE) {table}")
