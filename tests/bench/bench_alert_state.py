"""Benchmark: the alert engine's cost per execution once its workflows are busy, against the same
workflows when new, in the same run.

A watched workflow's value (`Stored`) is updated, encoded and written for every execution (and
decoded when read, unless the ledger still holds the object of a large value it just wrote; a
batch's last value goes to the store and its changelog). A new workflow's value is small; a busy
one remembers its latest SEEN_LIMIT execution ids, which made it some 45 KB with whole ids. This
benchmark runs the engine alone (tables in dicts, as `bench_alerts`' evaluator) over 100 watched
workflows with 1,000 subscriptions: it times their first executions (`fresh`, the baseline), then
gives each SEEN_LIMIT more, then times as many executions again (`busy`). Execution ids are UUIDs,
as most runtimes send. Then it gives each workflow a week of history at one execution a minute,
kept as the state's own bookkeeping keeps it (`record`, `advance`: the buckets a workflow that runs
every minute has), and times as many executions again (`week`). Prints one JSON object: events/s of
each phase (medians of ROUNDS rounds), their ratios to `fresh`, and the mean size of a workflow's
stored value, which is what the changelog carries per execution.
"""

import asyncio
import json
import os
import statistics
import sys
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from services.alerts.state import MINUTE_MS, SEEN_LIMIT, ExecutionFacts, advance, record
from services.alerts.tables import decode_stored
from services.common.log import configure_logging
from tests.bench.bench_alerts import Standalone, record_of, subscriptions, workflow_ids
from tests.factories import execution

WORKFLOWS = int(os.environ.get("BENCH_STATE_WORKFLOWS", "100"))
MEASURED = int(os.environ.get("BENCH_STATE_EVENTS", "5000"))  # per phase and round
ROUNDS = int(os.environ.get("BENCH_STATE_ROUNDS", "3"))
WEEK_MINUTES = 7 * 24 * 60


def progress(message: str) -> None:
    print(f"bench_alert_state: {message}", file=sys.stderr, flush=True)


class Run:
    """The engine alone over the watched workflows, and the executions fed to it so far."""

    def __init__(self) -> None:
        self.alone = Standalone(with_subs=True)
        self.workflows = workflow_ids()[:WORKFLOWS]
        self.start = datetime.now(UTC) - timedelta(days=1)
        self.sent = 0

    async def feed(self, count: int) -> float:
        """The next `count` executions, the workflows in turn, 10 ms apart in event time: the
        CPU seconds the engine took."""
        pairs = []
        for n in range(self.sent, self.sent + count):
            project, workflow = self.workflows[n % len(self.workflows)]
            event = execution(
                str(uuid.uuid4()), workflow, ended=self.start + timedelta(milliseconds=10 * n),
                level="error" if n % 10 == 0 else "info", duration_ms=100 + n % 700, cost=0.01,
            )  # fmt: skip
            pairs.append(record_of(project, event))
        _, cpu = await self.alone.run(pairs, first_offset=self.sent)
        self.sent += count
        return cpu

    def age_by_a_week(self) -> None:
        """Give every workflow a week of executions at one a minute, up to the next one."""
        next_ms = int((self.start + timedelta(milliseconds=10 * self.sent)).timestamp() * 1000)
        states = self.alone.tables.states
        for key, raw in states.items():
            stored = decode_stored(raw)
            for minutes in range(WEEK_MINUTES, 0, -1):
                ended = next_ms - minutes * MINUTE_MS
                workflow = stored.state.workflow_id
                failed, duration_ms = minutes % 10 == 0, 100 + minutes % 700
                facts = ExecutionFacts(f"week-{minutes}", workflow, ended, failed, duration_ms)
                record(stored.state, facts)
                advance(stored.state, ended)
            states[key] = msgspec.json.encode(stored)

    def value_bytes(self) -> float:
        """The mean size of a workflow's stored value."""
        return statistics.mean(len(v) for v in self.alone.tables.states.values())


async def one_round(n: int) -> dict[str, float]:
    run = Run()
    fresh_cpu = await run.feed(MEASURED)
    fresh_bytes = run.value_bytes()
    progress(f"round {n}: aging {WORKFLOWS} workflows by {SEEN_LIMIT} executions each")
    for _ in range(SEEN_LIMIT * WORKFLOWS // MEASURED):
        await run.feed(MEASURED)
    busy_cpu = await run.feed(MEASURED)
    busy_bytes = run.value_bytes()
    progress(f"round {n}: a week of history at one execution a minute for each workflow")
    run.age_by_a_week()
    week_cpu = await run.feed(MEASURED)
    result = {
        "fresh_events_per_cpu_s": MEASURED / fresh_cpu,
        "busy_events_per_cpu_s": MEASURED / busy_cpu,
        "week_events_per_cpu_s": MEASURED / week_cpu,
        "fresh_value_bytes": fresh_bytes,
        "busy_value_bytes": busy_bytes,
        "week_value_bytes": run.value_bytes(),
    }
    progress(f"round {n}: {json.dumps({k: round(v) for k, v in result.items()})}")
    return result


async def main() -> dict[str, Any]:
    configure_logging("warning")
    rounds = [await one_round(n + 1) for n in range(ROUNDS)]

    def median(name: str) -> float:
        return statistics.median(r[name] for r in rounds)

    fresh, busy = median("fresh_events_per_cpu_s"), median("busy_events_per_cpu_s")
    week = median("week_events_per_cpu_s")
    return {
        "benchmark": "alert_state",
        "workflows": WORKFLOWS,
        "subscriptions": len(subscriptions(0)),
        "seen_limit": SEEN_LIMIT,
        "events_per_phase": MEASURED,
        "rounds": ROUNDS,
        "fresh_events_per_cpu_s": round(fresh),
        "busy_events_per_cpu_s": round(busy),
        "week_events_per_cpu_s": round(week),
        "ratio_busy_over_fresh": round(busy / fresh, 3),
        "ratio_week_over_fresh": round(week / fresh, 3),
        "fresh_value_bytes": round(median("fresh_value_bytes")),
        "busy_value_bytes": round(median("busy_value_bytes")),
        "week_value_bytes": round(median("week_value_bytes")),
        "per_round": rounds,
        "note": "engine alone, CPU time of this process; the value bytes are what the store and "
        "the changelog take per execution of a workflow",
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main()), indent=2))
