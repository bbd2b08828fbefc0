"""Benchmark: events/s from HTTP batches until visible in GET /api/v1/logs, next to raw chDB inserts.

The whole stack (`codecourier up`) runs as a child process. Bodies of 500 completed events are
encoded before the clock starts and posted over a few connections while a tailing client pages
`GET /api/v1/logs?order=asc` by `nextCursor`; a round ends when it has seen every event. ROUNDS
rounds run one after the other on the same stack, each with execution ids of its own.

The baseline runs after the stack has stopped (chDB admits one process per data directory, and the
two must not share the CPU): it reads back the rows the sink stored in the first round and inserts
exactly those rows into a fresh chDB directory of the same schema, in the sink's batch size and
table order, ROUNDS times. The ratio is the median end-to-end rate over the median raw rate (one
round measured 0.12 to 0.21 on the same code: a single one says little). Prints one JSON object
on stdout; the work directory is removed afterwards unless BENCH_KEEP=1.

CPU is reported per process of the stack: the API with the log sink (one process: chDB admits one
per data directory), the embedded broker, the alert engine and the dispatcher (both also read the
events). The broker's figure grows with the run's length as much as with its events: it keeps
busy while its consumers' fetches wait (see deploy/README.md), so compare it within one run.
Before the timed phase, the same processes are measured for REST_S seconds with nothing sent
(`at_rest_cpu_pct`, percent of one core): what the stack costs a machine while idle.
`cpu_bound_ceiling` divides the machine's cores by the stack's CPU per event (every process
summed): the rate the stack could reach at best here, were every core kept busy with it.
"""

import asyncio
import hashlib
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

from services.common.clickhouse import ClickHouse
from services.common.log import configure_logging
from services.common.processes import free_port
from services.logsink import rows
from services.logsink.sink import SinkConfig
from tests.bench.ingestdata import make_bodies
from tests.bench.load import cpu_seconds, percentile
from tests.processes import CLI, ROOT, service_env, start_service, wait_for_file

EVENTS = int(os.environ.get("BENCH_EVENTS", "200000"))  # per round
ROUNDS = int(os.environ.get("BENCH_INGEST_ROUNDS", "3"))
BATCH = int(os.environ.get("BENCH_BATCH", "500"))
CONCURRENCY = int(os.environ.get("BENCH_INGEST_CONCURRENCY", "4"))
WORKFLOWS = int(os.environ.get("BENCH_WORKFLOWS", "50"))
PAGE = 1000
POLL_IDLE_S = float(os.environ.get("BENCH_POLL_S", "0.1"))
TIMEOUT_S = float(os.environ.get("BENCH_TIMEOUT_S", "420"))
BASELINE_TIMEOUT_S = 300
# Limits raised so that the ingest bucket never refuses during the run; it is still consulted.
RAISED = '{"enterprise": {"apiPerMinute": 100000000, "apiBurst": 100000000}}'
# Optional: sample the stack with py-spy during the timed phase, raw (collapsed) stacks to a file.
PYSPY_OUT = os.environ.get("BENCH_PYSPY")
PYSPY_ARGS = os.environ.get("BENCH_PYSPY_ARGS", "--threads --gil --nonblocking").split()
KEEP = os.environ.get("BENCH_KEEP") == "1"
REST_S = float(os.environ.get("BENCH_REST_SECONDS", "10"))  # nothing sent: the stack at rest
TARGET_EVENTS_PER_S = 20_000
TARGET_RATIO = 0.35

_page = msgspec.json.Decoder()


def progress(message: str) -> None:
    print(f"bench_ingest: {message}", file=sys.stderr, flush=True)


# ---- the stack ------------------------------------------------------------------------------


def start(work: Path) -> subprocess.Popen[bytes]:
    env = service_env(
        work / "data", http_port=free_port(), log_level="info", settings={"CC_PLANS": RAISED}
    )
    return start_service([CLI, "up"], env, work / "stack.log", own_session=True)


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (the stack drains the sink), then SIGKILL to the group if it lingers."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def children(pid: int) -> dict[str, int]:
    """Direct child processes of `pid` by role: the embedded broker, the alert engine and the
    dispatcher (each named by its command line)."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            argv = (stat.parent / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(fields[1]) == pid:
            found[_role(argv)] = int(stat.parent.name)
    return found


def _role(argv: list[bytes]) -> str:
    if b"broker" in argv:
        return "broker"
    for role in ("alerts", "dispatcher"):
        if role.encode() in argv:
            return role
    return Path(argv[0].decode(errors="replace")).name


def sink_batches(log_path: Path) -> dict[str, float]:
    """What the sink reported about its inserts (count, rows, summed insert time)."""
    batches, records, insert_ms, dedup_ms = 0, 0, 0.0, 0.0
    for line in log_path.read_bytes().splitlines():
        if b'"logsink.batch"' not in line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        batches += 1
        records += int(entry.get("executions", 0))
        insert_ms += float(entry.get("insert_ms", 0.0))
        dedup_ms += float(entry.get("dedup_ms", 0.0))
    return {
        "batches": batches,
        "rows": records,
        "mean_rows_per_batch": round(records / max(1, batches)),
        "insert_s": round(insert_ms / 1000, 3),
        "dedup_lookup_s": round(dedup_ms / 1000, 3),
    }


def profiler(pid: int) -> subprocess.Popen[bytes] | None:
    """py-spy recording `pid` until interrupted, when BENCH_PYSPY names an output file."""
    if not PYSPY_OUT:
        return None
    spy = Path(sys.executable).with_name("py-spy")
    command = [str(spy), "record", "--pid", str(pid), "--format", "raw", "-o", PYSPY_OUT]
    return subprocess.Popen(
        [*command, *PYSPY_ARGS], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def stop_profiler(spy: subprocess.Popen[bytes] | None) -> None:
    if spy is not None and spy.poll() is None:
        spy.send_signal(signal.SIGINT)
        try:
            spy.wait(30)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait(10)


# ---- HTTP -----------------------------------------------------------------------------------


class Tail:
    """A gapless tailing client: pages `order=asc` by `nextCursor` and notes when ids appear."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, key: str) -> None:
        self.session = session
        self.url = f"{base_url}/api/v1/logs"
        self.headers = {"Authorization": f"Bearer {key}"}
        self.cursor: str | None = None
        self.requests = 0

    async def page(self) -> list[dict[str, Any]]:
        """The next page (possibly empty); advances the cursor."""
        params = {"order": "asc", "limit": str(PAGE)}
        if self.cursor is not None:
            params["cursor"] = self.cursor
        async with self.session.get(self.url, params=params, headers=self.headers) as response:
            body = await response.read()
            if response.status != 200:
                raise RuntimeError(f"GET /logs -> {response.status}: {body[:300]!r}")
        self.requests += 1
        decoded = _page.decode(body)
        self.cursor = decoded["nextCursor"]
        return list(decoded["data"])

    async def until_seen(self, execution_id: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            items = await self.page()
            if any(item["executionId"] == execution_id for item in items):
                return
            if len(items) < PAGE:
                await asyncio.sleep(0.1)
        raise TimeoutError(f"{execution_id} not visible within {timeout_s} s")


async def post(
    session: aiohttp.ClientSession, url: str, key: str, body: bytes
) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    async with session.post(url, data=body, headers=headers) as response:
        return response.status, await response.read()


async def timed_phase(
    session: aiohttp.ClientSession, tail: Tail, base_url: str, key: str, bodies: list[bytes]
) -> dict[str, Any]:
    """Post every body over CONCURRENCY connections while tailing; returns the timings."""
    url = f"{base_url}/api/v1/events"
    accepted_at: list[float] = [0.0] * len(bodies)
    seen: set[str] = set()
    lags: list[float] = []
    duplicates = 0
    next_body = 0
    t0 = time.perf_counter()

    async def poster() -> None:
        nonlocal next_body
        while next_body < len(bodies):
            index = next_body
            next_body += 1
            status, answer = await post(session, url, key, bodies[index])
            if status != 202:
                raise RuntimeError(f"POST /events -> {status}: {answer[:300]!r}")
            accepted_at[index] = time.perf_counter()

    async def tailer() -> float:
        nonlocal duplicates
        while len(seen) < EVENTS:
            items = await tail.page()
            now = time.perf_counter()
            for item in items:
                execution_id = item["executionId"]
                if execution_id in seen:
                    duplicates += 1
                    continue
                seen.add(execution_id)
                accepted = accepted_at[int(execution_id.rsplit("-", 1)[1]) // BATCH]
                lags.append(max(0.0, now - accepted) if accepted else 0.0)
            if len(items) < PAGE and len(seen) < EVENTS:
                await asyncio.sleep(POLL_IDLE_S)
        return time.perf_counter()

    posting = asyncio.gather(*(poster() for _ in range(CONCURRENCY)))
    tailing = asyncio.ensure_future(tailer())
    try:
        await asyncio.wait_for(posting, TIMEOUT_S)
        t_accepted = max(accepted_at)
        progress(f"all {EVENTS} accepted in {t_accepted - t0:.2f} s; waiting for visibility")
        t_visible = await asyncio.wait_for(tailing, max(10.0, TIMEOUT_S - (t_accepted - t0)))
    finally:
        for task in (posting, tailing):
            task.cancel()
    lags.sort()
    return {
        "accept_s": t_accepted - t0,
        "visible_s": t_visible - t0,
        "seen": len(seen),
        "duplicates": duplicates,
        "lag_ms": {
            "p50": round(percentile(lags, 0.50) * 1000, 1),
            "p99": round(percentile(lags, 0.99) * 1000, 1),
            "max": round(lags[-1] * 1000, 1),
        },
    }


# ---- the baseline ---------------------------------------------------------------------------

WARMUP_WORKFLOW = "wf_bench_warmup"
_INSERT_SETTINGS = {"deduplicate_blocks_in_dependent_materialized_views": 1}


def _select(table: str, columns: tuple[str, ...], where: str, order: str) -> str:
    listed = ", ".join(f"`{c}`" for c in columns)
    return f"SELECT {listed} FROM {table} WHERE {where} ORDER BY {order}"


async def stored_rows(source: Path, prefix: str) -> tuple[list[Any], list[Any]]:
    """One round's rows as the sink stored them, in ingestion order: execution ids `prefix-<n>`."""
    ch = ClickHouse(f"chdb://{source}")
    ours = "startsWith(execution_id, {p:String})"
    try:
        executions = await ch.rows(
            _select("executions", rows.EXECUTION_COLUMNS, ours, "ingest_ts, `partition`, `offset`"),
            {"p": f"{prefix}-"},
        )
        payloads = await ch.rows(
            _select("execution_payloads FINAL", rows.PAYLOAD_COLUMNS, ours, "ingest_ts"),
            {"p": f"{prefix}-"},
        )
    finally:
        ch.close()
    if len(executions) != len(payloads):
        raise RuntimeError(f"{len(executions)} executions but {len(payloads)} payloads stored")
    return executions, payloads


async def insert_batches(
    target: Path, executions: list[Any], payloads: list[Any], as_json: bool
) -> dict[str, float]:
    """Insert into a fresh chDB of the same schema in the sink's batches: payloads, executions."""
    ch = ClickHouse(f"chdb://{target}")
    flush = SinkConfig().flush_rows
    encoder = msgspec.json.Encoder()
    try:
        await ch.migrate()
        insert_s = 0.0
        for first in range(0, len(executions), flush):
            batch = [
                ("execution_payloads", payloads[first : first + flush], rows.PAYLOAD_COLUMNS),
                ("executions", executions[first : first + flush], rows.EXECUTION_COLUMNS),
            ]
            blocks = [b"\n".join(map(encoder.encode, d)) if as_json else b"" for _, d, _ in batch]
            started = time.perf_counter()
            for (table, data, columns), block in zip(batch, blocks, strict=True):
                token = hashlib.sha256(f"{table}:{first}".encode()).hexdigest()
                settings = {**_INSERT_SETTINGS, "insert_deduplication_token": token}
                if as_json:
                    settings["date_time_input_format"] = "best_effort"
                    await ch.insert_json(table, block, columns, settings)
                else:
                    await ch.insert(table, data, columns, settings)
            insert_s += time.perf_counter() - started
        stored = (await ch.rows("SELECT count() FROM executions"))[0][0]
    finally:
        ch.close()
    if stored != len(executions):
        raise RuntimeError(f"baseline stored {stored} of {len(executions)} rows")
    return {"insert_s": insert_s}


async def baseline(source: Path, work: Path, prefix: str) -> dict[str, Any]:
    """Raw chDB insert times of one round's rows as the stack stored them, ROUNDS times each
    way, every time into a fresh directory (run in a child process)."""
    started = time.perf_counter()
    executions, payloads = await stored_rows(source, prefix)
    result: dict[str, Any] = {"rows": len(executions), "read_s": time.perf_counter() - started}
    for way, as_json in (("native", False), ("json", True)):
        result[way] = [
            (await insert_batches(work / f"raw-{way}-{n}", executions, payloads, as_json))[
                "insert_s"
            ]
            for n in range(ROUNDS)
        ]
    return result


def run_baseline(source: Path, work: Path, prefix: str) -> dict[str, Any]:
    """The baseline in its own process: chDB ignores SIGTERM, so a stuck one is killed."""
    args = ["baseline", str(source), str(work), prefix]
    done = subprocess.run(
        [sys.executable, "-m", "tests.bench.bench_ingest", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        timeout=BASELINE_TIMEOUT_S * ROUNDS,
        check=True,
    )
    return dict(json.loads(done.stdout))


# ---- main -----------------------------------------------------------------------------------


def warmup_event(execution_id: str) -> bytes:
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    return msgspec.json.encode(
        {
            "type": "workflow.execution.completed",
            "executionId": execution_id,
            "workflowId": WARMUP_WORKFLOW,
            "trigger": "api",
            "level": "info",
            "startedAt": now,
            "endedAt": now,
        }
    )


async def main() -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="cc-bench-ingest-"))
    prefix = f"bench-{secrets.token_hex(4)}"
    prefixes = [f"{prefix}-r{n}" for n in range(ROUNDS)]
    stack = start(work)
    rounds: list[dict[str, Any]] = []
    try:
        creds = await asyncio.to_thread(wait_for_file, work / "data" / "local.json", stack, 90)
        base_url, key = creds["baseUrl"], creds["apiKey"]
        timeout = aiohttp.ClientTimeout(total=60)
        connector = aiohttp.TCPConnector(limit=CONCURRENCY + 2)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            tail = Tail(session, base_url, key)
            ready = time.perf_counter()
            warm_id = f"{prefix}-warmup"
            status, answer = await post(
                session, f"{base_url}/api/v1/events", key, warmup_event(warm_id)
            )
            if status != 202:
                raise RuntimeError(f"warm-up POST -> {status}: {answer[:300]!r}")
            await tail.until_seen(warm_id, 90)
            pids = {"api_and_sink": stack.pid, **children(stack.pid)}
            progress(f"sink ready after {time.perf_counter() - ready:.1f} s; {REST_S} s at rest")
            await asyncio.sleep(2)  # past the consumers' quiet threshold (services.common.kafka)
            rest_before = {role: cpu_seconds(pid) for role, pid in pids.items()}
            await asyncio.sleep(REST_S)
            at_rest = {
                role: round((cpu_seconds(pid) - rest_before[role]) * 100 / REST_S, 1)
                for role, pid in pids.items()
            }
            progress(f"at rest, % of a core: {at_rest}")
            cpu = dict.fromkeys(pids, 0.0)
            client_cpu = 0.0
            for n, round_prefix in enumerate(prefixes):
                bodies = make_bodies(EVENTS, BATCH, WORKFLOWS, round_prefix)
                body_mb = sum(len(b) for b in bodies) / 1e6
                progress(f"round {n + 1}/{ROUNDS}: {EVENTS} events, {body_mb:.1f} MB")
                cpu_before = {role: cpu_seconds(pid) for role, pid in pids.items()}
                client_before = time.process_time()
                spy = profiler(stack.pid) if n == 0 else None
                try:
                    timed = await timed_phase(session, tail, base_url, key, bodies)
                finally:
                    stop_profiler(spy)
                for role, pid in pids.items():
                    cpu[role] += cpu_seconds(pid) - cpu_before[role]
                client_cpu += time.process_time() - client_before
                rounds.append({**timed, "body_mb": body_mb})
                progress(
                    f"all visible after {timed['visible_s']:.2f} s "
                    f"({EVENTS / timed['visible_s']:.0f} events/s)"
                )
            median_body_kb = statistics.median(len(b) for b in bodies) / 1000
    finally:
        stop(stack)
    sink = sink_batches(work / "stack.log")
    progress(f"stack stopped; raw chDB baseline on the rows of round 1, {ROUNDS} times each way")
    raw = run_baseline(work / "data" / "clickhouse", work, prefixes[0])
    if not KEEP:
        shutil.rmtree(work, ignore_errors=True)
    if raw["rows"] != EVENTS:
        raise RuntimeError(f"the stack stored {raw['rows']} of {EVENTS} events in round 1")
    e2e_rates = [EVENTS / r["visible_s"] for r in rounds]
    raw_rates = [EVENTS / seconds for seconds in raw["native"]]
    e2e_rate, raw_rate = statistics.median(e2e_rates), statistics.median(raw_rates)
    total = EVENTS * ROUNDS
    result: dict[str, Any] = {
        "benchmark": "ingest",
        "events_per_round": EVENTS,
        "rounds": ROUNDS,
        "batch_size": BATCH,
        "concurrency": CONCURRENCY,
        "http_accept_events_per_s": round(
            statistics.median(EVENTS / r["accept_s"] for r in rounds), 1
        ),
        "end_to_end_events_per_s": round(e2e_rate, 1),
        "raw_chdb_insert_rows_per_s": round(raw_rate, 1),
        "ratio_e2e_over_raw": round(e2e_rate / raw_rate, 3),
        "targets": {"end_to_end_events_per_s": TARGET_EVENTS_PER_S, "ratio": TARGET_RATIO},
        "per_round": {
            "end_to_end_events_per_s": [round(rate, 1) for rate in e2e_rates],
            "raw_chdb_insert_rows_per_s": [round(rate, 1) for rate in raw_rates],
            "accept_s": [round(r["accept_s"], 3) for r in rounds],
            "visible_s": [round(r["visible_s"], 3) for r in rounds],
            "accept_to_visible_ms": [r["lag_ms"] for r in rounds],
        },
        "seen": sum(r["seen"] for r in rounds),
        "duplicates_seen": sum(r["duplicates"] for r in rounds),
        "log_requests": tail.requests,
        "body_mb_per_round": round(rounds[0]["body_mb"], 1),
        "median_body_kb": round(median_body_kb, 1),
        "sink": sink,
        "raw_json_insert_rows_per_s": round(
            statistics.median(EVENTS / seconds for seconds in raw["json"]), 1
        ),
    }
    ingest_cpu = cpu["api_and_sink"] + cpu.get("broker", 0.0)
    stack_us = sum(cpu.values()) * 1e6 / total
    ceiling = (os.cpu_count() or 1) * 1e6 / stack_us
    result.update(
        {
            "cpu_s": {
                **{role: round(seconds, 2) for role, seconds in cpu.items()},
                "bench_client": round(client_cpu, 2),
            },
            # Per process, over every round: the API and the log sink share one (chDB admits one
            # per data directory); the broker is the embedded one; alerts and dispatcher also
            # read the events.
            "cpu_us_per_event": {
                role: round(seconds * 1e6 / total, 1) for role, seconds in cpu.items()
            },
            "server_cpu_us_per_event": round(ingest_cpu * 1e6 / total, 1),
            # Every process of the stack takes its share of this machine's cores for each event:
            # kept busy on every core, and with nothing else running, the stack could take at
            # most this many events per second (the end-to-end rate's ceiling here).
            "stack_cpu_us_per_event": round(stack_us, 1),
            "cpu_bound_ceiling": {
                "events_per_s": round(ceiling),
                "ratio_over_raw": round(ceiling / raw_rate, 3),
            },
            "at_rest_cpu_pct": at_rest,
            "load_average_1m": round(os.getloadavg()[0], 2),
            "cores": os.cpu_count(),
        }
    )
    return result


if __name__ == "__main__":
    configure_logging("warning")
    if sys.argv[1:2] == ["baseline"]:
        print(json.dumps(asyncio.run(baseline(Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]))))
        sys.exit(0)
    started = time.time()
    result = asyncio.run(main())
    result["wall_s"] = round(time.time() - started, 1)
    print(json.dumps(result, indent=2))
