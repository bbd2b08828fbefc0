"""Benchmark: concurrent control-plane writes on SQLite, through `ControlPlane` (a process's
writes take turns on a lock) against the same insert in a bare transaction each (SQLite's own
busy wait decides who writes), same database, same run.

Prints one JSON object: per concurrency, the median writes/s of each over the rounds (they
alternate, so machine noise hits both), the writes that failed ("database is locked"), and the
ratio ControlPlane / bare.
"""

import asyncio
import json
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from services.common.controlplane import ControlPlane, make_engine
from services.common.controlplane.schema import projects
from services.common.ids import new_id

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "7"))
CONCURRENCY = [int(n) for n in os.environ.get("BENCH_CONCURRENCY", "20,100").split(",")]

Write = Callable[[int], Awaitable[object]]


async def timed(write: Write, writers: int) -> tuple[float, int]:
    """Seconds for `writers` concurrent writes, and how many failed."""
    failed = 0

    async def one(index: int) -> None:
        nonlocal failed
        try:
            await write(index)
        except Exception:
            failed += 1

    started = time.perf_counter()
    await asyncio.gather(*(one(index) for index in range(writers)))
    return time.perf_counter() - started, failed


async def measure(plane: ControlPlane, writers: int) -> dict[str, object]:
    async def bare(index: int) -> None:
        async with plane.engine.begin() as conn:
            row = {"name": "p", "plan": "free", "created_at_ms": index}
            await conn.execute(projects.insert().values(id=new_id("prj_"), **row))

    async def through_plane(index: int) -> None:
        await plane.create_project("p", "free", index)

    seconds: dict[str, list[float]] = {"bare": [], "controlPlane": []}
    failures = dict.fromkeys(seconds, 0)
    for _ in range(ROUNDS):
        for name, write in (("bare", bare), ("controlPlane", through_plane)):
            took, failed = await timed(write, writers)
            seconds[name].append(took)
            failures[name] += failed
    rates = {name: writers / statistics.median(took) for name, took in seconds.items()}
    return {
        "writers": writers,
        "bareWritesPerS": round(rates["bare"]),
        "controlPlaneWritesPerS": round(rates["controlPlane"]),
        "bareFailed": failures["bare"],
        "controlPlaneFailed": failures["controlPlane"],
        "ratio": round(rates["controlPlane"] / rates["bare"], 3),
    }


async def main() -> None:
    with tempfile.TemporaryDirectory() as work:
        plane = ControlPlane(make_engine(f"sqlite+aiosqlite:///{Path(work) / 'cp.db'}"))
        await plane.migrate(1)
        try:
            results = [await measure(plane, writers) for writers in CONCURRENCY]
        finally:
            await plane.close()
    print(json.dumps({"bench": "controlplane_sqlite_writes", "rounds": ROUNDS,
                      "cores": os.cpu_count(), "results": results}))  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
