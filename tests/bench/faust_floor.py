"""The alert engine's framework floor: a faust worker that reads the engine's topics as the engine
does and does nothing with what it reads.

Run by `bench_alerts` as a process of its own (`python -m tests.bench.faust_floor`), with
`CC_KAFKA_BOOTSTRAP`, the number of `executions` records to wait for (`FLOOR_RECORDS`) and a file
to write its figures to (`FLOOR_OUT`). It is the engine's app (`AlertsApp`, the same transport
adaptations, faust settings, source topics and raw serializers) with one agent that takes the
same batches (`noack_take`, `AlertsConfig` defaults) and acknowledges every event, without tables,
rules or produced records. Its rate is what a faust worker can read at one event per record on
this machine, so it bounds the engine's rate: the engine adds its evaluation to it.

The clock runs from the first batch to the batch that holds the last awaited record; the CPU is
this process's over the same span.
"""

import asyncio
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import faust
from mode import CrashingSupervisor

from schemas import topics
from services.alerts.app import FAUST_SETTINGS, source_topic
from services.alerts.transport import AlertsApp
from services.common.workers import AlertsConfig


def build(bootstrap: str, partitions: int, expected: int, out: Path) -> AlertsApp:
    """The bare worker: the engine's app and source with an agent that only acknowledges."""
    config = AlertsConfig()
    app = AlertsApp(
        "bench-faust-floor",
        broker=f"kafka://{bootstrap}",
        store="memory://",
        datadir=str(out.parent / "faust-floor"),
        topic_partitions=partitions,
        broker_commit_interval=config.commit_interval_s,
        **FAUST_SETTINGS,
    )
    source = source_topic(app, partitions)
    seen = {"records": 0, "batches": 0}
    started: list[float] = []

    @app.agent(source, concurrency=1, supervisor_strategy=CrashingSupervisor)
    async def read(stream: Any) -> None:
        async for events in stream.noack_take(config.batch_max, within=config.batch_s):
            if not started:
                started.extend((time.perf_counter(), time.process_time()))
            seen["batches"] += 1
            seen["records"] += sum(1 for e in events if e.message.topic == topics.EXECUTIONS)
            for event in events:
                await stream.ack(event)
            if seen["records"] >= expected:
                wall, cpu = time.perf_counter() - started[0], time.process_time() - started[1]
                figures = json.dumps({**seen, "seconds": wall, "cpu_s": cpu})
                await asyncio.to_thread(out.write_text, figures)
                os.kill(os.getpid(), signal.SIGTERM)
                return

    return app


def main() -> None:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    app = build(
        os.environ["CC_KAFKA_BOOTSTRAP"],
        int(os.environ.get("CC_KAFKA_PARTITIONS", "8")),
        int(os.environ["FLOOR_RECORDS"]),
        Path(os.environ["FLOOR_OUT"]),
    )
    worker = faust.Worker(app, loop=loop, quiet=True, redirect_stdouts=False)
    worker.spinner = None
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
