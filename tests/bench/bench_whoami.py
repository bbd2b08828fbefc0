"""Benchmark: authenticated GET /api/v1/whoami vs a bare aiohttp handler, same machine, same run.

Prints one JSON object. Rounds alternate between the two servers so that machine noise hits both;
figures are medians over the rounds.
"""

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from services.common.processes import free_port
from tests.bench.load import cpu_seconds, median_of, run_load
from tests.processes import CLI, ROOT, service_env, start_service, wait_for_file

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
DURATION_S = float(os.environ.get("BENCH_SECONDS", "5"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "32"))
# Limits raised so that the bucket never refuses during the run; the bucket is still consulted.
RAISED = '{"enterprise": {"apiPerMinute": 100000000, "apiBurst": 100000000}}'


async def _wait_http(url: str) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(300):
            try:
                async with session.get(url) as response:
                    if response.status < 500:
                        return
            except aiohttp.ClientError:
                await asyncio.sleep(0.1)
    raise TimeoutError(url)


async def measured(url: str, headers: dict[str, str], pid: int) -> dict[str, float]:
    """One load round, plus the server's CPU microseconds per request."""
    before = cpu_seconds(pid)
    result = await run_load(url, headers, CONCURRENCY, DURATION_S)
    result["server_cpu_us_per_request"] = round(
        (cpu_seconds(pid) - before) * 1e6 / max(1, result["requests"]), 1
    )
    return result


async def main() -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix="cc-bench-"))
    env = service_env(
        work / "data", http_port=free_port(), log_level="info", settings={"CC_PLANS": RAISED}
    )
    stack = start_service([CLI, "up"], env, work / "stack.log")
    bare_port = free_port()
    bare = subprocess.Popen(
        [sys.executable, "-m", "tests.bench.bare_server", str(bare_port)], cwd=ROOT
    )
    try:
        creds = wait_for_file(work / "data" / "local.json", stack)
        bare_url = f"http://127.0.0.1:{bare_port}/api/v1/whoami"
        await _wait_http(bare_url)
        api_url = f"{creds['baseUrl']}/api/v1/whoami"
        auth = {"Authorization": f"Bearer {creds['apiKey']}"}
        await run_load(api_url, auth, CONCURRENCY, 1.0)  # warm-up: caches, connections
        await run_load(bare_url, {}, CONCURRENCY, 1.0)
        api_runs, bare_runs = [], []
        for _ in range(ROUNDS):
            api_runs.append(await measured(api_url, auth, stack.pid))
            bare_runs.append(await measured(bare_url, {}, bare.pid))
        api_rps, bare_rps = median_of(api_runs, "rps"), median_of(bare_runs, "rps")
        return {
            "benchmark": "whoami",
            "concurrency": CONCURRENCY,
            "rounds": ROUNDS,
            "seconds_per_round": DURATION_S,
            "api": {
                "rps": api_rps,
                "p50_ms": median_of(api_runs, "p50_ms"),
                "p99_ms": median_of(api_runs, "p99_ms"),
                "errors": sum(r["errors"] for r in api_runs),
                "server_cpu_us_per_request": median_of(api_runs, "server_cpu_us_per_request"),
            },
            "bare_aiohttp": {
                "rps": bare_rps,
                "p50_ms": median_of(bare_runs, "p50_ms"),
                "p99_ms": median_of(bare_runs, "p99_ms"),
                "server_cpu_us_per_request": median_of(bare_runs, "server_cpu_us_per_request"),
            },
            "ratio_rps_api_over_bare": round(api_rps / bare_rps, 3),
            "target_ratio": 0.85,  # issue 13: authenticated whoami over the bare handler
        }
    finally:
        for process in (stack, bare):
            process.terminate()
        for process in (stack, bare):
            process.wait(20)


if __name__ == "__main__":
    started = time.time()
    result = asyncio.run(main())
    result["wall_s"] = round(time.time() - started, 1)
    print(json.dumps(result, indent=2))
