"""Benchmark: the alert engine's cost per execution once its workflows are busy, against the same
workflows when new, in the same run.

A watched workflow's value (`Stored`) is decoded, updated, encoded and written (to the store and
its changelog) for every execution. A new workflow's value is small; a busy one remembers its
latest SEEN_LIMIT execution ids, which made it some 45 KB with whole ids. This benchmark runs the
engine alone (tables in dicts, as `bench_alerts`' evaluator) over 100 watched workflows with
1,000 subscriptions: it times their first executions (`fresh`, the baseline), then gives each
SEEN_LIMIT more, then times as many executions again (`busy`). Execution ids are UUIDs, as most
runtimes send. Prints one JSON object: events/s of each phase (medians of ROUNDS rounds), their
ratio, and the mean size of a workflow's stored value, which is what the changelog carries per
execution.
"""

import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgspec

from schemas import topics
from services.alerts.engine import Engine
from services.alerts.state import SEEN_LIMIT
from services.alerts.tables import Tables
from services.alerts.ticks import TickGate
from services.alerts.views import Views, partition_of
from services.common.config import Settings
from services.common.log import configure_logging
from tests.bench.bench_alerts import (
    BATCH,
    PARTITIONS,
    record_of,
    subscriptions,
    workflow_ids,
)
from tests.factories import execution

WORKFLOWS = int(os.environ.get("BENCH_STATE_WORKFLOWS", "100"))
MEASURED = int(os.environ.get("BENCH_STATE_EVENTS", "5000"))  # per phase and round
ROUNDS = int(os.environ.get("BENCH_STATE_ROUNDS", "3"))


def progress(message: str) -> None:
    print(f"bench_alert_state: {message}", file=sys.stderr, flush=True)


class Run:
    """An engine over dict tables and the messages fed to it so far."""

    def __init__(self) -> None:
        settings = Settings(data_dir=Path("unused"), clickhouse_url="", database_url="")
        self.views = Views()
        for record in subscriptions(int(time.time() * 1000) - 3_600_000):
            for p in range(PARTITIONS):
                self.views.preload(p, f"{record.id}/{p}".encode(), msgspec.json.encode(record))
        self.tables = Tables({}, {})
        self.engine = Engine(
            settings, PARTITIONS, self.tables, self.views, _discard, TickGate(_zero), _refuse
        )
        self.workflows = workflow_ids()[:WORKFLOWS]
        self.start = datetime.now(UTC) - timedelta(days=1)
        self.sent = 0

    def messages(self, count: int) -> list[SimpleNamespace]:
        """The next `count` executions, the workflows in turn, 10 ms apart in event time."""
        out = []
        for _ in range(count):
            n = self.sent
            project, workflow = self.workflows[n % len(self.workflows)]
            event = execution(
                str(uuid.uuid4()), workflow, ended=self.start + timedelta(milliseconds=10 * n),
                level="error" if n % 10 == 0 else "info", duration_ms=100 + n % 700, cost=0.01,
            )  # fmt: skip
            key, value = record_of(project, event)
            out.append(
                SimpleNamespace(topic=topics.EXECUTIONS, partition=partition_of(key, PARTITIONS),
                                offset=n, key=key, value=value, timestamp=time.time())
            )  # fmt: skip
            self.sent += 1
        return out

    async def feed(self, messages: list[SimpleNamespace]) -> float:
        """Handle the messages in the worker's batches; the CPU seconds it took."""
        cpu = time.process_time()
        for at in range(0, len(messages), BATCH):
            await self.engine.handle_batch(messages[at : at + BATCH])
        return time.process_time() - cpu

    def value_bytes(self) -> float:
        """The mean size of a workflow's stored value."""
        return statistics.mean(len(v) for v in self.tables.states.values())


async def _discard(_records: Any) -> None:
    return None


async def _zero(_partition: int) -> int:
    return 0


async def _refuse(_message: Any, reason: str) -> None:
    raise AssertionError(f"dead letter: {reason}")


async def one_round(n: int) -> dict[str, float]:
    run = Run()
    fresh_cpu = await run.feed(run.messages(MEASURED))
    fresh_bytes = run.value_bytes()
    progress(f"round {n}: aging {WORKFLOWS} workflows by {SEEN_LIMIT} executions each")
    for _ in range(SEEN_LIMIT * WORKFLOWS // MEASURED):
        await run.feed(run.messages(MEASURED))
    busy_cpu = await run.feed(run.messages(MEASURED))
    result = {
        "fresh_events_per_cpu_s": MEASURED / fresh_cpu,
        "busy_events_per_cpu_s": MEASURED / busy_cpu,
        "fresh_value_bytes": fresh_bytes,
        "busy_value_bytes": run.value_bytes(),
    }
    progress(f"round {n}: {json.dumps({k: round(v) for k, v in result.items()})}")
    return result


async def main() -> dict[str, Any]:
    configure_logging("warning")
    rounds = [await one_round(n + 1) for n in range(ROUNDS)]

    def median(name: str) -> float:
        return statistics.median(r[name] for r in rounds)

    fresh, busy = median("fresh_events_per_cpu_s"), median("busy_events_per_cpu_s")
    return {
        "benchmark": "alert_state",
        "workflows": WORKFLOWS,
        "subscriptions": len(subscriptions(0)),
        "seen_limit": SEEN_LIMIT,
        "events_per_phase": MEASURED,
        "rounds": ROUNDS,
        "fresh_events_per_cpu_s": round(fresh),
        "busy_events_per_cpu_s": round(busy),
        "ratio_busy_over_fresh": round(busy / fresh, 3),
        "fresh_value_bytes": round(median("fresh_value_bytes")),
        "busy_value_bytes": round(median("busy_value_bytes")),
        "per_round": rounds,
        "note": "engine alone, CPU time of this process; the value bytes are what the store and "
        "the changelog take per execution of a workflow",
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main()), indent=2))
