"""Benchmark: the console's logs page and execution detail in Chromium, next to the raw API call
for the same data, at 10,000 and 1,000,000 stored executions (20 % of them in the viewed project,
the rest spread over 99 others; the bench's query data set).

For each size: `codecourier up` makes its data directory and console owner, is stopped, its chDB
store is filled, and it is started again. A signed-in Chromium then opens `/logs` and
`/executions/{id}` REPS times, alternating with the same API calls made with the project's key
from this process. Figures are medians and p95 over the rounds:
- page: from navigation start to the 100 rows (or the waterfall) in the document;
- api: the same request(s) the page makes, over HTTP from this process;
- render_after_api: from the page's own logs response ending (resource timing) to the rows being
  in the document; the console's budget is 300 ms.
Prints one JSON object.
"""

import asyncio
import json
import os
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
from playwright.async_api import Page, async_playwright

from services.common.clickhouse import ClickHouse
from services.common.processes import free_port
from tests.bench.bench_query import wait_ready
from tests.bench.load import percentile
from tests.bench.querydata import DataSet, fill_clickhouse, progress
from tests.processes import Stack, start_stack, stop_stack

SIZES = [int(s) for s in os.environ.get("BENCH_CONSOLE_SIZES", "10000,1000000").split(",")]
REPS = int(os.environ.get("BENCH_REPS", "20"))
PROJECTS = 100
PARTITIONS = 8
CHROMIUM = os.environ.get("CC_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
RAISED = {"apiPerMinute": 100_000_000, "apiBurst": 100_000_000}
ENV = {
    "CC_KAFKA_PARTITIONS": str(PARTITIONS),
    "CC_PLANS": json.dumps({p: RAISED for p in ("free", "pro", "team", "enterprise")}),
    "CC_CONSOLE_RATE_PER_MINUTE": "100000000",
}
TARGETS = {"render_after_api_p50_ms": 300}
ROWS_READY = "document.querySelectorAll('main table tbody tr').length >= 100"
WATERFALL_READY = "document.querySelector('main .waterfall .wf-row') !== null"
# The page's own logs response: when it ended, on the page's clock.
LOGS_RESPONSE_END = """() => {
  const entries = performance.getEntriesByType('resource')
    .filter((e) => e.name.includes('/api/v1/logs'));
  return entries.length ? entries[entries.length - 1].responseEnd : null;
}"""


def stats_ms(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p95_ms": round(percentile(ordered, 0.95) * 1000, 1),
    }


async def prepared_stack(data_dir: Path, size: int) -> tuple[Stack, dict[str, Any]]:
    """A stack whose store holds `size` executions; its local.json as a dict."""
    stack = start_stack(data_dir, {**ENV, "CC_HTTP_PORT": str(free_port())})
    local = json.loads((data_dir / "local.json").read_text())
    stop_stack(stack)
    data = DataSet.plan(size, PROJECTS, local["projectId"], time.time_ns() // 1000)
    progress(f"console: filling {size:,} executions")
    ch = ClickHouse(f"chdb://{data_dir / 'clickhouse'}")  # chDB: one process at a time
    try:
        await ch.migrate()
        await fill_clickhouse(ch, data, PARTITIONS)
    finally:
        ch.close()
    # local.json stays, so the restart keeps the project, its key and the console owner; the
    # old file is there at once, so readiness is awaited on the new port instead.
    port = free_port()
    stack = start_stack(data_dir, {**ENV, "CC_HTTP_PORT": str(port)})
    base_url = f"http://127.0.0.1:{port}"
    await wait_ready(base_url)
    return msgspec.structs.replace(stack, base_url=base_url), local


async def sign_in(page: Page, base_url: str, console: dict[str, str]) -> None:
    await page.goto(f"{base_url}/sign-in")
    await page.get_by_label("Email").fill(console["email"])
    await page.get_by_label("Password").fill(console["password"])
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_role("link", name="Logs").wait_for()


async def time_page(page: Page, url: str, ready: str) -> tuple[float, float | None]:
    """(seconds from navigation to `ready`, ms from the logs response to `ready` on the page)."""
    started = time.perf_counter()
    await page.goto(url, wait_until="commit")
    done_at = await page.wait_for_function(
        f"() => ({ready}) ? performance.now() : false", polling="raf", timeout=60_000
    )
    elapsed = time.perf_counter() - started
    response_end = await page.evaluate(LOGS_RESPONSE_END)
    rendered_ms = await done_at.json_value()
    lag = None if response_end is None else float(rendered_ms) - float(response_end)
    return elapsed, lag


async def time_api(
    session: aiohttp.ClientSession, calls: list[tuple[str, dict[str, str]]]
) -> float:
    started = time.perf_counter()
    for url, params in calls:
        async with session.get(url, params=params) as response:
            await response.read()
            if response.status != 200:
                raise RuntimeError(f"GET {url} -> {response.status}")
    return time.perf_counter() - started


async def measure_size(size: int, work: Path) -> dict[str, Any]:
    stack, local = await prepared_stack(work / f"data-{size}", size)
    try:
        base = stack.base_url
        project_rows = (size + 4) // 5
        ids = [f"exec-{random.Random(i).randrange(project_rows) * 5}" for i in range(REPS)]
        headers = {"Authorization": f"Bearer {local['apiKey']}"}
        figures: dict[str, list[float]] = {k: [] for k in ("logs_page", "logs_api", "render_after_api", "execution_page", "execution_api")}  # fmt: skip
        async with async_playwright() as pw, aiohttp.ClientSession(headers=headers) as session:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = await (
                await browser.new_context(viewport={"width": 1280, "height": 900})
            ).new_page()
            await sign_in(page, base, local["console"])
            logs_call = [(f"{base}/api/v1/logs", {"limit": "100"})]
            for round_, execution_id in enumerate(ids):
                detail_calls = [
                    (f"{base}/api/v1/logs", {"executionId": execution_id, "details": "full", "includeTraceSpans": "true", "includeFinalOutput": "true"}),
                    (f"{base}/api/v1/logs/executions/{execution_id}", {}),
                ]  # fmt: skip
                for first in (round_ % 2 == 0, round_ % 2 == 1):  # alternate who goes first
                    if first:
                        seconds, lag = await time_page(page, f"{base}/logs", ROWS_READY)
                        figures["logs_page"].append(seconds)
                        if lag is not None:
                            figures["render_after_api"].append(lag / 1000)
                        seconds, _ = await time_page(
                            page, f"{base}/executions/{execution_id}", WATERFALL_READY
                        )
                        figures["execution_page"].append(seconds)
                    else:
                        figures["logs_api"].append(await time_api(session, logs_call))
                        figures["execution_api"].append(await time_api(session, detail_calls))
            await browser.close()
    finally:
        stop_stack(stack)
    result = {name: stats_ms(values) for name, values in figures.items() if values}
    for kind in ("logs", "execution"):
        result[f"{kind}_page_over_api_p50"] = round(
            result[f"{kind}_page"]["p50_ms"] / result[f"{kind}_api"]["p50_ms"], 2
        )
    result["executions_stored"] = size
    result["executions_in_project"] = (size + 4) // 5
    progress(f"console: {size:,} -> {result}")
    return result


async def main() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-console-") as tmp:
        sizes = {str(size): await measure_size(size, Path(tmp)) for size in SIZES}
    return {
        "bench": "console",
        "cpus": os.cpu_count(),
        "reps": REPS,
        "sizes": sizes,
        "targets": TARGETS,
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main()), indent=2))
