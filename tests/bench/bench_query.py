"""Benchmark: the logs listing over HTTP on ClickHouse vs the same queries on a PostgreSQL row store.

Both stores get the same generated rows (see querydata) in the same run; each query runs REPS
times, alternating between the stores so that machine noise hits both. Prints one JSON object.

Per query: the API's page query alone at the driver (`ch_page_sql`, before the stack starts, with
the API's settings and limits), the whole GET over HTTP (`ch_http`), what each GET spent on top
of its own queries as its `Server-Timing` header reports them (`http_overhead_p50_ms`:
authentication, rate limit, watermark, limits block, items, JSON, HTTP), the PostgreSQL SQL
(`pg_sql`) and the ratios, each next to its target (`targets`).

What the profile of the read path showed, and what changed: chDB's own work per page was about
2.5 ms of planning (parse, analysis, plan optimisation weighing the table's projections, pipeline)
plus reading one granule of each column on a parallel pipeline, and clickhouse-connect's chDB
backend and result conversion under 1 ms; `executionId` paid for a second, IN-subquery plan
through the by_execution projection. Pages now read on one thread without weighing projections,
`executionId` is a plain condition that the by_execution projection serves as an index, and
times come back as epoch milliseconds instead of a datetime per value. Over HTTP, `up` took the
visibility bound from `sink_watermarks` every 50 ms on the request path and ran every query on
the sink's chDB handle, one call at a time: the bound now comes from the in-process sink's
written watermarks and queries have a handle of their own. Past its fixed cost (about 3 ms for
the sorting key with the project's condition), chDB spent about 0.3 ms on each further column a
page read, whatever its size or codec: a page now reads the sorting key and `page_row` (ClickHouse
migration 5, the item's fields as one JSON array) instead of thirteen columns.
"""

import asyncio
import json
import os
import random
import shutil
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import chdb
import msgspec
from msgspec import Struct

from services.api import logquery
from services.common.clickhouse import ClickHouse, limit_settings
from services.common.config import DEFAULT_QUERY_LIMITS
from services.common.processes import free_port
from tests.bench.load import percentile
from tests.bench.querydata import DataSet, fill_clickhouse, fill_postgres, progress
from tests.conftest import PG_DSN
from tests.processes import Stack, start_stack, stop_stack

ROWS = int(os.environ.get("BENCH_ROWS", "10000000"))
PROJECTS = int(os.environ.get("BENCH_PROJECTS", "1000"))
REPS = int(os.environ.get("BENCH_REPS", "50"))
WARMUP = int(os.environ.get("BENCH_WARMUP", "3"))
DEEP_PAGES = int(os.environ.get("BENCH_DEEP_PAGES", "50"))
PARTITIONS = 8
PAGE = 100
PAGE_MAX_BYTES = 8 * 1024 * 1024  # the API's default logs page bound
RAISED = '{"enterprise": {"apiPerMinute": 100000000, "apiBurst": 100000000}}'
TARGETS = {
    "p50_ms": 30,
    "p99_ms": 150,
    "pg_over_ch_p50_filtered": 10,
    "generate_s": 600,
    "sql_p50_ms": 5,
    "http_overhead_p50_ms": 2,
    "one_day_window_pg_over_ch_p50": 20,
    "p99_over_p50": 3,
}
# The queries whose SQL alone must be within TARGETS["sql_p50_ms"].
SQL_TARGETED = ("newest_page", "deep_cursor_page", "execution_id", "model", "error_duration_range")

_COLUMNS = (
    "l.id, l.workflow_id, l.execution_id, l.level, l.trigger, l.started_at, l.ended_at, "
    "l.total_duration_ms, l.cost, l.files, l.created_at"
)
_FROM = "FROM workflow_execution_logs l WHERE l.workspace_id = $1"
# LIMIT 101 like the API: one row more than the page tells whether there is another page.
_ORDER = "ORDER BY l.created_at DESC, l.id DESC LIMIT 101"
PG_SQL = {
    "newest_page": f"SELECT {_COLUMNS} {_FROM} {_ORDER}",
    "deep_cursor_page": f"SELECT {_COLUMNS} {_FROM} AND (l.created_at, l.id) < ($2, $3) {_ORDER}",
    "error_duration_range": f"SELECT {_COLUMNS} {_FROM} AND l.level = 'error' "
    f"AND l.total_duration_ms BETWEEN 1000 AND 60000 {_ORDER}",
    "execution_id": f"SELECT {_COLUMNS} {_FROM} AND l.execution_id = $2 {_ORDER}",
    "model": f"SELECT {_COLUMNS} {_FROM} AND l.cost -> 'models' ? $2 {_ORDER}",
    "one_day_window": f"SELECT {_COLUMNS} {_FROM} AND l.started_at >= $2 AND l.started_at <= $3 "
    f"{_ORDER}",
    "full_with_trace_spans": f"SELECT {_COLUMNS}, w.name, w.description, "
    "l.execution_data -> 'traceSpans' FROM workflow_execution_logs l "
    f"LEFT JOIN workflow w ON w.id = l.workflow_id WHERE l.workspace_id = $1 {_ORDER}",
}
FILTERED = ("error_duration_range", "execution_id", "model", "one_day_window")
_CH_PARTS = (
    "SELECT sum(bytes_on_disk), count() FROM system.parts WHERE active "
    "AND table IN ('executions', 'execution_payloads')"
)
_CH_DEEP_ROW = (
    "SELECT ingest_ts, partition, offset FROM executions WHERE project_id = {project:String} "
    "ORDER BY ingest_ts DESC, partition DESC, offset DESC LIMIT 1 OFFSET {n:UInt64}"
)
_DEEP_ROW = (
    "SELECT created_at, id FROM workflow_execution_logs WHERE workspace_id = $1 "
    "ORDER BY created_at DESC, id DESC OFFSET $2 LIMIT 1"
)


class Case(Struct, frozen=True):
    """One repetition of a query: the HTTP parameters and the PostgreSQL arguments."""

    http: dict[str, str]
    pg: tuple[Any, ...]


class Api(Struct, frozen=True):
    """The running stack's logs endpoint and the heavy project's key."""

    session: aiohttp.ClientSession
    url: str
    headers: dict[str, str]


def stack_env(port: int) -> dict[str, str]:
    """Stack settings: a known port, the default partitions, limits that never refuse."""
    return {"CC_HTTP_PORT": str(port), "CC_KAFKA_PARTITIONS": str(PARTITIONS), "CC_PLANS": RAISED}


async def create_heavy_project(stack: Stack) -> tuple[str, str]:
    """A project on the enterprise plan through the admin API: (project id, key secret)."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{stack.base_url}/admin/v1/projects",
            json={"name": "bench-heavy", "plan": "enterprise"},
            headers={"Authorization": f"Bearer {stack.admin_token}"},
        ) as response,
    ):
        body = await response.json()
        if response.status not in (200, 201):
            raise RuntimeError(f"creating the project failed: {response.status} {body}")
    return body["data"]["project"]["id"], body["data"]["key"]["secret"]


async def wait_ready(base_url: str, timeout_s: float = 180) -> None:
    """Wait until /healthz and then /readyz answer 200."""
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        for path in ("/healthz", "/readyz"):
            while True:
                try:
                    async with session.get(base_url + path) as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{base_url}{path} not ready within {timeout_s} s")
                await asyncio.sleep(0.2)


class ClickHousePhase(Struct, frozen=True):
    """What the ClickHouse side reports before the stack starts."""

    generate_s: float
    bytes_on_disk: int
    parts: int
    page_sql: dict[str, dict[str, Any]]
    select_1: dict[str, float]  # `SELECT 1` on chDB's own connection


async def clickhouse_phase(data_dir: Path, data: DataSet) -> ClickHousePhase:
    """Fill the stack's chDB directory (the stack must be stopped), then time the page queries."""
    started = time.monotonic()
    ch = ClickHouse(f"chdb://{data_dir / 'clickhouse'}")
    try:
        await ch.migrate()
        await fill_clickhouse(ch, data, PARTITIONS)
        elapsed = time.monotonic() - started
        size, parts = (await ch.rows(_CH_PARTS))[0]
        progress(f"clickhouse: {parts} active parts, {size:,} bytes")
        page_sql, select_1 = await time_page_sql(ch, data)
    finally:
        ch.close()
    return ClickHousePhase(elapsed, int(size), int(parts), page_sql, select_1)


async def time_page_sql(
    ch: ClickHouse, data: DataSet
) -> tuple[dict[str, dict[str, Any]], dict[str, float]]:
    """The API's page query for every case, straight on chDB (no payloads, usage or HTTP).

    Each repetition also runs the same query on chDB's own connection, with the same parameters
    (bound by chDB) and settings, and rows left as chDB's bytes (`chdb_direct`): the engine's
    share of the page, without clickhouse-connect, its result conversion or the thread hop.
    Then `SELECT 1` there: the engine's cost of any query.
    """
    row = await ch.rows(_CH_DEEP_ROW, {"project": data.heavy_project, "n": DEEP_PAGES * PAGE - 1})
    deep = logquery.Position(*row[0])
    limits = DEFAULT_QUERY_LIMITS["logs"]
    engine = chdb.connect(ch.url.removeprefix("chdb://"))
    figures: dict[str, dict[str, Any]] = {}
    try:
        for name, cases in plan_cases(data, "", (None, None), WARMUP + REPS).items():
            seconds, direct = [], []
            for index, case in enumerate(cases):
                params = {k: v for k, v in case.http.items() if k != "cursor"}
                q = logquery.parse_query(params, data.heavy_project, b"unused")
                if "cursor" in case.http:
                    q = msgspec.structs.replace(q, after=deep)
                inline = logquery.inline_bytes(PAGE_MAX_BYTES, q.limit + 1)
                sql, args = logquery.build_sql(data.heavy_project, q, data.newest_us + 1, inline)
                settings = logquery.page_settings(q)
                started = time.perf_counter()
                await ch.rows(sql, args, settings, limits=limits)
                between = time.perf_counter()
                engine.query(with_settings(sql, {**limit_settings(limits), **settings}), "Native",
                             params={k: str(v) for k, v in args.items()})  # fmt: skip
                if index >= WARMUP:
                    seconds.append(between - started)
                    direct.append(time.perf_counter() - between)
            figures[name] = {**summary(seconds), "chdb_direct": summary(direct)}
        select_1 = []
        for index in range(WARMUP + REPS):
            started = time.perf_counter()
            engine.query("SELECT 1", "Native")
            if index >= WARMUP:
                select_1.append(time.perf_counter() - started)
    finally:
        engine.close()
    return figures, summary(select_1)


def with_settings(sql: str, settings: dict[str, Any]) -> str:
    """`sql` with a SETTINGS clause (the benchmark's own names and values, not a user's)."""
    clause = ", ".join(
        f"{name} = {value!r}" if isinstance(value, str) else f"{name} = {value}"
        for name, value in settings.items()
    )
    return f"{sql} SETTINGS {clause}"


async def generate_postgres(conn: asyncpg.Connection, data: DataSet) -> tuple[float, int]:
    """Fill the throwaway database: (seconds, bytes of the logs table with its indexes)."""
    started = time.monotonic()
    await fill_postgres(conn, data)
    elapsed = time.monotonic() - started
    size = await conn.fetchval("SELECT pg_total_relation_size('workflow_execution_logs')")
    return elapsed, int(size)


def _dsn(database: str) -> str:
    return PG_DSN.rsplit("/", 1)[0] + "/" + database


async def fetch_http(api: Api, params: dict[str, str]) -> tuple[float, dict[str, Any], float]:
    """One GET of the logs listing: (seconds, decoded body, the request's database seconds as
    its `Server-Timing` reports them); anything but 200 is an error."""
    started = time.perf_counter()
    async with api.session.get(api.url, params=params, headers=api.headers) as response:
        raw = await response.read()
    elapsed = time.perf_counter() - started
    if response.status != 200:
        raise RuntimeError(f"GET {api.url} {params} -> {response.status}: {raw[:300]!r}")
    return elapsed, json.loads(raw), db_seconds(response.headers.get("Server-Timing", ""))


def db_seconds(server_timing: str) -> float:
    """The `db` duration of a `Server-Timing` value, in seconds."""
    for metric in server_timing.split(","):
        name, _, params = metric.strip().partition(";")
        if name == "db":
            return float(params.split(";")[0].removeprefix("dur=")) / 1000
    raise RuntimeError(f"no db duration in Server-Timing {server_timing!r}")


async def deep_cursor(api: Api) -> str:
    """The cursor of page DEEP_PAGES + 1, reached by following nextCursor from the newest page."""
    params = {"limit": str(PAGE)}
    for _ in range(DEEP_PAGES):
        _, body, _ = await fetch_http(api, params)
        if not body["nextCursor"]:
            raise RuntimeError("ran out of pages before the deep page")
        params = {"limit": str(PAGE), "cursor": body["nextCursor"]}
    return params["cursor"]


def day_window(data: DataSet, days_ago: int) -> tuple[datetime, datetime]:
    """One whole UTC day, `days_ago` days before the newest row: inclusive bounds."""
    newest = datetime.fromtimestamp(data.newest_us / 1e6, tz=UTC)
    day = newest.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=days_ago)
    return day, day + timedelta(days=1) - timedelta(milliseconds=1)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def plan_cases(
    data: DataSet, cursor: str, after: tuple[Any, ...], count: int
) -> dict[str, list[Case]]:
    """`count` repetitions of every query; ids and days vary so that no cache makes it trivial."""
    rng = random.Random(7)
    heavy, page = data.heavy_project, {"limit": str(PAGE)}
    ids = [data.heavy_execution_id(rng.randrange(data.heavy_rows)) for _ in range(count)]
    days = [day_window(data, rng.randint(1, 28)) for _ in range(count)]

    def same(http: dict[str, str], pg: tuple[Any, ...]) -> list[Case]:
        return [Case({**page, **http}, pg)] * count

    return {
        "newest_page": same({}, (heavy,)),
        "deep_cursor_page": same({"cursor": cursor}, (heavy, *after)),
        "error_duration_range": same(
            {"level": "error", "minDurationMs": "1000", "maxDurationMs": "60000"}, (heavy,)
        ),
        "execution_id": [Case({**page, "executionId": i}, (heavy, i)) for i in ids],
        "model": same({"model": "gpt-4o"}, (heavy, "gpt-4o")),
        "one_day_window": [
            Case({**page, "startDate": _iso(a), "endDate": _iso(b)}, (heavy, a, b)) for a, b in days
        ],
        "full_with_trace_spans": same({"details": "full", "includeTraceSpans": "true"}, (heavy,)),
    }


def summary(seconds: list[float]) -> dict[str, float]:
    """p50 and p99 in milliseconds."""
    ordered = sorted(seconds)
    return {
        "p50_ms": round(percentile(ordered, 0.50) * 1000, 2),
        "p99_ms": round(percentile(ordered, 0.99) * 1000, 2),
    }


async def measure(
    name: str, cases: list[Case], api: Api, conn: asyncpg.Connection
) -> dict[str, Any]:
    """Run one query on both stores, alternating; the first WARMUP repetitions are not kept."""
    ch_s: list[float] = []
    db_s: list[float] = []
    on_top_s: list[float] = []
    pg_s: list[float] = []
    ch_ids: list[str] = []
    pg_ids: list[str] = []
    sql = PG_SQL[name]
    for index, case in enumerate(cases):
        elapsed, body, db = await fetch_http(api, case.http)
        started = time.perf_counter()
        rows = await conn.fetch(sql, *case.pg)
        pg_elapsed = time.perf_counter() - started
        if index == 0:
            ch_ids = [item["executionId"] for item in body["data"]]
            pg_ids = [row["execution_id"] for row in rows[:PAGE]]
        if index >= WARMUP:
            ch_s.append(elapsed)
            db_s.append(db)
            on_top_s.append(elapsed - db)
            pg_s.append(pg_elapsed)
    ch, pg = summary(ch_s), summary(pg_s)
    ratio = round(pg["p50_ms"] / ch["p50_ms"], 2)
    progress(f"{name}: clickhouse/http {ch}, postgres/sql {pg}, ratio {ratio}")
    return {
        "ch_http": {**ch, "items": len(ch_ids)},
        "ch_sql_in_request": summary(db_s),
        "http_on_top_of_its_sql": summary(on_top_s),
        "pg_sql": {**pg, "items": len(pg_ids)},
        "pg_over_ch_p50": ratio,
        "same_first_page": ch_ids == pg_ids,
        "filtered": name in FILTERED,
    }


def judge(name: str, figures: dict[str, Any], sql: dict[str, Any]) -> dict[str, Any]:
    """A query's figures with the SQL alone, the HTTP overhead, the ratios and the targets."""
    http, pg = figures["ch_http"], figures["pg_sql"]
    overhead = round(http["p50_ms"] - sql["p50_ms"], 2)
    on_top = figures["http_on_top_of_its_sql"]["p50_ms"]
    checks = {
        # issue 13: the SQL alone, the HTTP layer on top (of each request's own query time),
        # tails within 3x the median
        "http_overhead_p50_ms": on_top <= TARGETS["http_overhead_p50_ms"],
        "http_p99_over_p50": http["p99_ms"] <= TARGETS["p99_over_p50"] * http["p50_ms"],
        "sql_p99_over_p50": sql["p99_ms"] <= TARGETS["p99_over_p50"] * sql["p50_ms"],
        # the earlier round's absolute bounds, kept
        "http_p50_ms": http["p50_ms"] <= TARGETS["p50_ms"],
        "http_p99_ms": http["p99_ms"] <= TARGETS["p99_ms"],
    }
    if name in SQL_TARGETED:
        checks["sql_p50_ms"] = sql["p50_ms"] <= TARGETS["sql_p50_ms"]
    if name in FILTERED:
        checks["pg_over_ch_p50_filtered"] = (
            figures["pg_over_ch_p50"] >= TARGETS["pg_over_ch_p50_filtered"]
        )
    if name == "one_day_window":
        checks["one_day_window_pg_over_ch_p50"] = (
            figures["pg_over_ch_p50"] >= TARGETS["one_day_window_pg_over_ch_p50"]
        )
    progress(f"{name}: sql {sql}, http on top {on_top} ms ({overhead} ms), checks {checks}")
    return {
        **figures,
        "ch_page_sql": sql,
        "http_overhead_p50_ms": on_top,
        "http_p50_minus_page_sql_p50_ms": overhead,
        "pg_over_ch_sql_p50": round(pg["p50_ms"] / sql["p50_ms"], 2),
        "http_p99_over_p50": round(http["p99_ms"] / http["p50_ms"], 2),
        "sql_p99_over_p50": round(sql["p99_ms"] / sql["p50_ms"], 2),
        "checks": checks,
        "target_met": all(checks.values()),
    }


async def run_queries(
    base_url: str, secret: str, conn: asyncpg.Connection, data: DataSet
) -> dict[str, Any]:
    """Every query on both stores, one after another."""
    headers = {"Authorization": f"Bearer {secret}"}
    # A generic plan of a prepared statement assumes an average project, which the heavy one
    # is not (for `model` it picks a bitmap AND over 2M rows): plan every execution instead.
    await conn.execute("SET plan_cache_mode = force_custom_plan")
    async with aiohttp.ClientSession() as session:
        api = Api(session, f"{base_url}/api/v1/logs", headers)
        _, first, _ = await fetch_http(api, {"limit": str(PAGE)})
        if len(first["data"]) < PAGE:
            raise RuntimeError(f"newest page has {len(first['data'])} items: rows not visible")
        cursor = await deep_cursor(api)
        after = await conn.fetchrow(_DEEP_ROW, data.heavy_project, DEEP_PAGES * PAGE - 1)
        cases = plan_cases(data, cursor, (after["created_at"], after["id"]), WARMUP + REPS)
        return {name: await measure(name, runs, api, conn) for name, runs in cases.items()}


async def run(data_dir: Path) -> dict[str, Any]:
    """Create the heavy project, generate both stores, measure, clean up."""
    stack = start_stack(data_dir, stack_env(free_port()))
    try:
        await wait_ready(stack.base_url)
        heavy_id, secret = await create_heavy_project(stack)
    finally:
        stop_stack(stack)
    data = DataSet.plan(ROWS, PROJECTS, heavy_id, time.time_ns() // 1000)
    progress(f"generating {ROWS:,} rows over {PROJECTS} projects; heavy {heavy_id}")
    ch = await clickhouse_phase(data_dir, data)
    database = f"cc_bench_{os.getpid()}"
    admin = await asyncpg.connect(PG_DSN)
    await admin.execute(f'CREATE DATABASE "{database}"')
    try:
        conn = await asyncpg.connect(_dsn(database))
        try:
            pg_s, pg_bytes = await generate_postgres(conn, data)
            port = free_port()
            stack = start_stack(data_dir, stack_env(port))
            try:
                base_url = f"http://127.0.0.1:{port}"
                await wait_ready(base_url)
                load = os.getloadavg()[0]
                queries = await run_queries(base_url, secret, conn, data)
            finally:
                stop_stack(stack)
        finally:
            await conn.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}"')
        await admin.close()
    shutil.rmtree(data_dir.parent, ignore_errors=True)
    queries = {name: judge(name, figures, ch.page_sql[name]) for name, figures in queries.items()}
    result = report(data, ch, (pg_s, pg_bytes), queries)
    result["machine"] = {"cpus": os.cpu_count(), "load_avg_1m_before_queries": round(load, 2)}
    return result


def report(
    data: DataSet, ch: ClickHousePhase, pg: tuple[float, int], queries: dict[str, Any]
) -> dict[str, Any]:
    """The JSON figures."""
    generated_in_time = max(ch.generate_s, pg[0]) <= TARGETS["generate_s"]
    return {
        "benchmark": "query",
        "rows": data.rows,
        "projects": data.projects,
        "heavy_project_rows": data.heavy_rows,
        "repetitions": REPS,
        "deep_page_number": DEEP_PAGES + 1,
        "generate_s": {"clickhouse": round(ch.generate_s, 1), "postgres": round(pg[0], 1)},
        "storage_bytes": {"clickhouse": ch.bytes_on_disk, "postgres": pg[1]},
        "clickhouse_parts": ch.parts,
        "chdb_direct_select_1": ch.select_1,
        "queries": queries,
        "targets": {
            **TARGETS,
            "filtered_queries": list(FILTERED),
            "sql_targeted_queries": list(SQL_TARGETED),
        },
        "all_targets_met": generated_in_time and all(q["target_met"] for q in queries.values()),
        "notes": [
            "ch_http: GET /api/v1/logs on `codecourier up` (chDB), one request at a time on one "
            "keep-alive connection, with authentication, rate limiting, the limits block and JSON.",
            "ch_page_sql: only the API's page query (services.api.logquery.build_sql, with "
            "page_settings and the logs route's limits) run through the project's ClickHouse "
            "client (clickhouse-connect's chDB backend, rows as tuples) in the benchmark "
            "process before the stack starts: no payload, usage or visibility queries, no HTTP; "
            "it is the SQL alone of the targets (sql_p50_ms).",
            "ch_page_sql.chdb_direct: the same query, parameters and settings on chDB's own "
            "connection in the same repetitions, rows left as chDB's bytes: the engine's share "
            "of ch_page_sql; chdb_direct_select_1 is the engine's cost of any query.",
            "ch_sql_in_request: the database time of each GET as the API measured it around its "
            "queries (the Server-Timing header's db duration: the hop to the query's thread "
            "included, as for ch_page_sql); http_on_top_of_its_sql is each GET's time less its "
            "own database time, and http_overhead_p50_ms is its median: what authentication, "
            "limits, the visibility bound, the items, JSON and HTTP add to a request. "
            "http_p50_minus_page_sql_p50_ms, the difference of two medians measured in two "
            "phases minutes apart, is kept for comparison with earlier runs: machine noise "
            "between the phases moves it by several milliseconds either way.",
            "checks: each issue-13 target per query (sql_p50_ms for the keyed queries, "
            "http_overhead_p50_ms, p99 <= 3x p50 for HTTP and SQL, one_day_window >= 20x "
            "PostgreSQL) and the earlier absolute bounds; target_met is all of them.",
            "pg_sql: the equivalent SQL sent straight to PostgreSQL with asyncpg prepared "
            "statements planned for each execution (plan_cache_mode = force_custom_plan); no "
            "HTTP layer, no authentication, no JSON body: this favours PostgreSQL.",
            "PostgreSQL: one wide row per execution (execution_data and cost as jsonb), B-tree "
            "indexes on (workspace_id, created_at, id), (workspace_id, started_at), execution_id, "
            "(workflow_id, started_at), level, trigger, and GIN on cost->'models'; the table is "
            "UNLOGGED for a faster load, which does not change reads.",
            "Same rows per project in both stores and the same value distributions; only the "
            "heavy project's executions carry trace spans and final output, in both stores. "
            "Completion order and execution ids are identical, so same_first_page is expected "
            "to be true for newest_page, deep_cursor_page, execution_id and full_with_trace_spans.",
            f"p99 is the nearest-rank percentile of {REPS} timed repetitions after {WARMUP} "
            "warm-up ones; both stores and the client share the machine.",
        ],
    }


def main() -> dict[str, Any]:
    """Run in a fresh directory, kept only when something fails."""
    work = Path(tempfile.mkdtemp(prefix="cc-bench-query-"))
    (work / "data").mkdir()
    try:
        return asyncio.run(run(work / "data"))
    except BaseException:
        progress(f"failed; the stack's data and log are kept in {work}")
        raise


if __name__ == "__main__":
    started = time.time()
    result = main()
    result["wall_s"] = round(time.time() - started, 1)
    print(json.dumps(result, indent=2))
