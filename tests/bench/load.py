"""A small closed-loop HTTP load generator: N workers, fixed duration, latency percentiles."""

import asyncio
import itertools
import os
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import aiohttp


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


async def run_load(
    url: str | Sequence[str],
    headers: dict[str, str],
    concurrency: int,
    duration_s: float,
    *,
    method: str = "GET",
    body: bytes | None = None,
    expected_status: int = 200,
) -> dict[str, float]:
    """Hammer `url` (or several in turn, as a round-robin balancer would) for `duration_s`;
    return requests/s and p50/p99 latency in ms."""
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + duration_s
    urls = itertools.cycle([url] if isinstance(url, str) else url)

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal errors
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            async with session.request(method, next(urls), headers=headers, data=body) as response:
                await response.read()
                if response.status != expected_status:
                    errors += 1
            latencies.append(time.perf_counter() - started)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "requests": len(latencies),
        "errors": errors,
        "rps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 3),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 3),
    }


def median_of(runs: list[dict[str, float]], field: str) -> float:
    """The median of one figure over several runs."""
    return round(statistics.median(run[field] for run in runs), 3)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process (all its threads) so far; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(v) for v in fields[11:13]) / os.sysconf("SC_CLK_TCK")
