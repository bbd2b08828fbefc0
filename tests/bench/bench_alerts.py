"""Benchmark: the alert engine's throughput per worker, its rule cost, and its alert latency.

Throughput: 1,000 subscriptions (10 per project over 100 projects, the seven rules in turn, half
of them on all workflows, half on 20 listed ones) watch 10,000 workflows. A first
`codecourier alerts` worker applies the subscriptions and a warm-up load, then stops; the
measured load is produced while it is down, and a second worker on the same group recovers its
tables and works the backlog off. The clock runs from the first to the last of the sentinel
notifications that bracket the load on every partition. The same run without those
subscriptions is the baseline, and the ratio of the two rates is the cost of the rules.
The evaluator alone (same records in the worker's batches, tables in dicts, no Kafka) is measured
in this process; `over_evaluator` is the worker's rate over it (target 0.5), by wall clock and by
CPU time (`_cpu`: the worker process's CPU against this process's, robust to other load).
The framework's floor is measured too (`faust_floor`, see `tests.bench.faust_floor`): the same
load read by a faust worker of the engine's app and settings that does nothing with it. Reading
at that rate and then evaluating at the evaluator's gives `ceiling_over_evaluator`, what a
worker without tables or produced records could reach at best.

Silences: the same subscribed run again with 100 active silences on `silences`, one per
project, a mix of matchers (by two workflows, by one rule, by one subscription) and of kinds
(one-off, or a weekly window open now in one of several time zones). They mute a small share
of the alerts (the `muted_share` printed), so the ratio to the subscribed run without them is
the cost of checking silences; the evaluator alone and the latency are measured with them too.

Latency: with the subscribed worker caught up, a background load of 1,000 events/s runs while
probe executions, each triggering a latency_threshold alert, are produced; latency is from the
produce call to the notification's arrival on `notifications` (the probes' project has a
silence too in the silenced run, one that takes none of them). Prints one JSON object.
"""

import asyncio
import json
import os
import random
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from tempfile import TemporaryDirectory
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from schemas import topics
from schemas.events import ExecutionCompleted, ExecutionRecord, topic_key
from schemas.notifications import SubscriptionRecord
from schemas.silences import Matchers, Schedule, SilenceRecord
from services.alerts.engine import Engine
from services.alerts.tables import Tables
from services.alerts.ticks import OffsetReader, TickGate
from services.alerts.views import Views, partition_of
from services.common.broker import EmbeddedBroker
from services.common.config import Settings
from services.common.kafka import ensure_topics
from services.common.log import configure_logging
from services.common.workers import AlertsConfig
from tests.bench.load import cpu_seconds, percentile
from tests.factories import execution
from tests.integration.test_alerts_app import Worker, sub
from tests.processes import service_env, start_service

PARTITIONS = int(os.environ.get("BENCH_PARTITIONS", "8"))
EVENTS = int(os.environ.get("BENCH_ALERT_EVENTS", "50000"))
WARMUP = int(os.environ.get("BENCH_ALERT_WARMUP", "16000"))
GROUPED = 10  # events per record in the grouped run
PROJECTS, WORKFLOWS_PER_PROJECT, SUBS_PER_PROJECT = 100, 100, 10
RULES = (
    {"rule": "consecutive_failures"}, {"rule": "failure_rate"}, {"rule": "latency_threshold"},
    {"rule": "latency_spike"}, {"rule": "cost_threshold"}, {"rule": "no_activity"},
    {"rule": "error_count"},
)  # fmt: skip
BACKGROUND_PER_S = 1000
LATENCY_S = float(os.environ.get("BENCH_LATENCY_S", "30"))
PROBES_PER_S = 10
SENTINEL = "prj_sentinel"
SILENCE_ZONES = ("UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo")
# Issue targets: the worker at one event per record at least half the evaluator alone (same run),
# and alert latency under 1,000 events/s one per record.
TARGETS = {"worker_over_evaluator": 0.5, "latency_p50_ms": 100, "latency_p99_ms": 1000}
BATCH = AlertsConfig().batch_max  # the worker's batch; the evaluator alone is fed the same

Pairs = list[tuple[bytes, bytes]]


def progress(message: str) -> None:
    print(f"bench_alerts: {message}", file=sys.stderr, flush=True)


def workflow_ids() -> list[tuple[str, str]]:
    """(project, workflow) of the 10,000 watched workflows."""
    return [
        (f"prj_b{p:03d}", f"wf{w:03d}")
        for p in range(PROJECTS)
        for w in range(WORKFLOWS_PER_PROJECT)
    ]


def subscriptions(created_ms: int) -> list[SubscriptionRecord]:
    """Ten subscriptions per project, the seven rules in turn."""
    records = []
    for p in range(PROJECTS):
        project = f"prj_b{p:03d}"
        for k in range(SUBS_PER_PROJECT):
            listed = [f"wf{(k * 7 + j) % WORKFLOWS_PER_PROJECT:03d}" for j in range(20)]
            records.append(
                sub(f"ntf_{project}_{k}", project, createdAtMs=created_ms,
                    allWorkflows=k % 2 == 0, workflowIds=[] if k % 2 == 0 else listed,
                    alertConfig=RULES[(p * SUBS_PER_PROJECT + k) % len(RULES)])
            )  # fmt: skip
    return records


def silences(now_ms: int) -> list[SilenceRecord]:
    """One active silence per project, matching in turn by two workflows, by one rule and by one
    subscription; even projects' are one-off, odd projects' a weekly window open now."""
    return [silence(f"sil_b{p:03d}", f"prj_b{p:03d}", p, now_ms) for p in range(PROJECTS)]


def silence(silence_id: str, project: str, n: int, now_ms: int, **matchers: Any) -> SilenceRecord:
    """The `n`th silence of the mix (see `silences`), active from an hour ago for hours."""
    kind = n % 3
    if matchers:
        match = Matchers(**matchers)
    elif kind == 0:
        match = Matchers(
            workflowIds=[f"wf{(n * 13 + j) % WORKFLOWS_PER_PROJECT:03d}" for j in (0, 1)]
        )
    elif kind == 1:
        match = msgspec.convert({"rules": [RULES[n % len(RULES)]["rule"]]}, Matchers)
    else:
        match = Matchers(subscriptionIds=[f"ntf_{project}_{n % SUBS_PER_PROJECT}"])
    hour = 3_600_000
    base: dict[str, Any] = {
        "v": 1, "id": silence_id, "projectId": project, "version": 1, "matchers": match,
        "createdAtMs": now_ms - hour, "startsAtMs": now_ms - 2 * hour,
    }  # fmt: skip
    if n % 2 == 0:
        return SilenceRecord(**base, endsAtMs=now_ms + 8 * hour)
    zone = SILENCE_ZONES[n % len(SILENCE_ZONES)]
    opened = datetime.fromtimestamp((now_ms - hour) / 1000, UTC).astimezone(ZoneInfo(zone))
    window = Schedule(timezone=zone, daysOfWeek=["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                      start=opened.strftime("%H:%M"), durationMinutes=8 * 60)  # fmt: skip
    return SilenceRecord(**base, schedule=window)


def load_records(count: int, per_record: int = 1, seed: int = 7) -> Pairs:
    """`count` completed events over the watched workflows, `per_record` of one workflow in
    each record (the API writes one record per request and workflow)."""
    rng = random.Random(seed)
    pairs = workflow_ids()
    start = datetime.now(UTC) - timedelta(minutes=30)
    out = []
    for r in range(count // per_record):
        project, workflow = rng.choice(pairs)
        events = [
            execution(
                f"exe-{seed}-{r}-{j}", workflow,
                ended=start + timedelta(milliseconds=20 * (r * per_record + j)),
                level="error" if rng.random() < 0.1 else "info",
                duration_ms=rng.randint(50, 800), cost=round(rng.uniform(0.001, 0.02), 4),
            )
            for j in range(per_record)
        ]  # fmt: skip
        out.append(record_of(project, *events))
    return out


def record_of(project: str, *events: ExecutionCompleted) -> tuple[bytes, bytes]:
    """(key, value) of an ExecutionRecord carrying one workflow's events."""
    record = ExecutionRecord(
        v=2, projectId=project, receivedAtMs=int(time.time() * 1000), retentionDays=7,
        events=[msgspec.Raw(msgspec.json.encode(e)) for e in events], plan="team",
    )  # fmt: skip
    return topic_key(project, events[0].workflowId), msgspec.json.encode(record)


def sentinel_workflows() -> list[str]:
    """One sentinel workflow per partition."""
    found: dict[int, str] = {}
    i = 0
    while len(found) < PARTITIONS:
        name = f"sentinel-{i}"
        found.setdefault(partition_of(topic_key(SENTINEL, name), PARTITIONS), name)
        i += 1
    return [found[p] for p in range(PARTITIONS)]


def sentinels(prefix: str) -> Pairs:
    """A sentinel execution on every partition."""
    return [record_of(SENTINEL, execution(f"{prefix}-{s}", s)) for s in sentinel_workflows()]


class Notes:
    """Reads `notifications` from its end, recording each record's arrival time."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.arrivals: list[tuple[float, dict[str, Any]]] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, enable_auto_commit=False, fetch_max_wait_ms=5
        )
        await consumer.start()
        tps = [TopicPartition(topics.NOTIFICATIONS, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        reader = OffsetReader(self.bootstrap)
        for tp, end in (await reader.ends(tps)).items():
            consumer.seek(tp, end)
        await reader.stop()
        self._task = asyncio.create_task(self._read(consumer))

    async def _read(self, consumer: AIOKafkaConsumer) -> None:
        try:
            while True:
                for records in (await consumer.getmany(timeout_ms=50)).values():
                    now = time.perf_counter()
                    self.arrivals += [(now, json.loads(r.value)) for r in records]
        finally:
            await consumer.stop()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def of_project(self, project: str, prefix: str = "") -> list[tuple[float, dict[str, Any]]]:
        return [
            (t, n)
            for t, n in self.arrivals
            if n["projectId"] == project
            and (n["payload"]["data"]["executionId"] or "").startswith(prefix)
        ]


@dataclass
class Stack:
    """A broker of its own with one alerts worker and the bench's clients."""

    broker: EmbeddedBroker
    producer: AIOKafkaProducer
    notes: Notes
    worker: Worker | None = None

    @classmethod
    async def start(cls, work: Path, name: str) -> "Stack":
        broker = EmbeddedBroker(0, work / f"{name}-broker.log")
        bootstrap = await broker.start()
        await ensure_topics(bootstrap, PARTITIONS)
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=512 * 1024
        )
        await producer.start()
        notes = Notes(bootstrap)
        await notes.start()
        return cls(broker, producer, notes)

    async def stop(self) -> None:
        if self.worker is not None:
            self.worker.kill()
        await self.notes.stop()
        await self.producer.stop()
        self.broker.stop()

    async def produce(self, topic: str, pairs: Pairs) -> None:
        futures = [await self.producer.send(topic, value, key=key) for key, value in pairs]
        await asyncio.gather(*futures)

    async def publish(
        self,
        records: Sequence[SubscriptionRecord | SilenceRecord],
        topic: str = topics.SUBSCRIPTIONS,
    ) -> None:
        """Broadcast compacted records to every partition of their topic, as the outbox does."""
        futures = []
        for record in records:
            value = msgspec.json.encode(record)
            for p in range(PARTITIONS):
                key = f"{record.id}/{p}".encode()
                send = self.producer.send(topic, value, key=key, partition=p)
                futures.append(await send)
        await asyncio.gather(*futures)

    async def publish_marked(
        self,
        records: Sequence[SubscriptionRecord | SilenceRecord],
        topic: str = topics.SUBSCRIPTIONS,
    ) -> None:
        """Publish as the API's outbox does for a running worker: each record first as a
        marker on every partition of `executions`, then its compacted records with the
        markers' offsets, so the worker applies it to every execution produced afterwards."""
        for record in records:
            value = msgspec.json.encode(record)
            sent = []
            for p in range(PARTITIONS):
                key = f"{record.id}/{p}".encode()
                sent.append(
                    await self.producer.send(topics.EXECUTIONS, value, key=key, partition=p)
                )
            for p, meta in enumerate(await asyncio.gather(*sent)):
                marked = msgspec.structs.replace(record, markerOffset=meta.offset)
                await self.producer.send(
                    topic, msgspec.json.encode(marked), key=f"{record.id}/{p}".encode(), partition=p
                )
        await self.producer.flush()


async def throughput(
    stack: Stack, with_subs: bool, warmup: Pairs, load: Pairs, events: int, silenced: bool
) -> dict[str, Any]:
    """Events/s of a worker working off a backlog, its tables recovered from a first run."""
    created = int(time.time() * 1000) - 3_600_000
    plain = sub("ntf_sentinel", SENTINEL, createdAtMs=created)
    await stack.publish([plain, *(subscriptions(created) if with_subs else [])])
    if silenced:
        await stack.publish(silences(int(time.time() * 1000)), topics.SILENCES)
    await stack.produce(topics.EXECUTIONS, warmup)
    name = f"bench-{with_subs}-{silenced}-{len(load)}"
    log_path = Path(stack.broker.log_path.parent, f"{name}.log")
    bootstrap = stack.broker.bootstrap
    stack.worker = Worker(bootstrap, PARTITIONS, name, log_path, CC_TICK_SECONDS="15").start()
    await caught_up(stack, "warm")
    stack.worker.kill(signal.SIGTERM)
    for pairs in (sentinels("start"), load, sentinels("end")):
        await stack.produce(topics.EXECUTIONS, pairs)
    progress(f"{events} events in {len(load)} records on the log; restarting the worker")
    stack.worker.start()
    assert stack.worker.process is not None and stack.broker.process is not None
    broker_cpu = cpu_seconds(stack.broker.process.pid)
    deadline = time.perf_counter() + 900
    while len(stack.notes.of_project(SENTINEL, "end-")) < PARTITIONS:
        assert time.perf_counter() < deadline, "the worker did not finish the load in time"
        await asyncio.sleep(0.05)
    first = min(t for t, _ in stack.notes.of_project(SENTINEL, "start-"))
    last = max(t for t, _ in stack.notes.of_project(SENTINEL, "end-"))
    measured = [n for t, n in stack.notes.arrivals if first <= t <= last]
    worker_cpu = cpu_seconds(stack.worker.process.pid)
    return {
        "events": events,
        "records": len(load),
        "seconds": round(last - first, 2),
        "events_per_s": round(events / (last - first)),
        "events_per_cpu_s": round(events / worker_cpu),
        "worker_cpu_s": round(worker_cpu, 1),
        "broker_cpu_s": round(cpu_seconds(stack.broker.process.pid) - broker_cpu, 1),
        "notifications": len([n for n in measured if n["projectId"] != SENTINEL]),
    }


async def faust_floor(work: Path, load: Pairs) -> dict[str, Any]:
    """The framework's floor (`tests.bench.faust_floor`): a faust worker that reads the same load
    the way the engine does, and nothing else, in a broker of its own."""
    stack = await Stack.start(work, "faust-floor")
    try:
        await stack.produce(topics.EXECUTIONS, load)
        out = work / "faust-floor.json"
        env = service_env(
            work / "faust-floor-data",
            bootstrap=stack.broker.bootstrap,
            settings={
                "CC_KAFKA_PARTITIONS": str(PARTITIONS),
                "FLOOR_RECORDS": str(len(load)),
                "FLOOR_OUT": str(out),
            },
        )
        process = start_service(
            [sys.executable, "-m", "tests.bench.faust_floor"], env, work / "faust-floor.log"
        )
        try:
            await asyncio.to_thread(process.wait, 300)
        finally:
            process.kill()
        figures = json.loads(out.read_text())
    finally:
        await stack.stop()
    return {
        "records": figures["records"],
        "batches": figures["batches"],
        "seconds": round(figures["seconds"], 2),
        "records_per_s": round(figures["records"] / figures["seconds"]),
        "records_per_cpu_s": round(figures["records"] / figures["cpu_s"]),
    }


async def latency(
    stack: Stack, background_per_s: int, per_record: int, silenced: bool = False
) -> dict[str, Any]:
    """Produce-to-notification latency of alerts under a steady background load."""
    phase = f"{background_per_s}-{per_record}"
    probe_project = f"prj_probe_{phase}"
    rule = sub(f"ntf_probe_{phase}", probe_project, createdAtMs=int(time.time() * 1000) - 60_000,
               alertConfig={"rule": "latency_threshold", "durationThresholdMs": 1000})  # fmt: skip
    await stack.publish_marked([rule])  # applied before the probes, whenever its topic is read
    if silenced:  # checked for every probe, taking none of them
        quiet = silence(f"sil_probe_{phase}", probe_project, 0, int(time.time() * 1000),
                        workflowIds=["not-a-probe"])  # fmt: skip
        await stack.publish_marked([quiet], topics.SILENCES)
    await caught_up(stack, f"ready-{phase}")
    rng = random.Random(11)
    pairs = workflow_ids()
    sent: dict[str, float] = {}
    background = 0
    stop_at = time.perf_counter() + LATENCY_S

    async def background_load() -> None:
        nonlocal background
        step = 0.01
        next_at = time.perf_counter()
        while time.perf_counter() < stop_at:
            for _ in range(round(background_per_s * step / per_record)):
                project, workflow = rng.choice(pairs)
                events = [
                    execution(f"bg-{phase}-{background + j}", workflow,
                              duration_ms=rng.randint(50, 800),
                              level="error" if rng.random() < 0.1 else "info")
                    for j in range(per_record)
                ]  # fmt: skip
                key, value = record_of(project, *events)
                await stack.producer.send(topics.EXECUTIONS, value, key=key)
                background += per_record
            next_at += step
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))

    async def probes() -> None:
        i = 0
        while time.perf_counter() < stop_at:
            execution_id = f"probe-{phase}-{i}"
            probe = execution(execution_id, f"probe-wf-{i}", duration_ms=5000)
            key, value = record_of(probe_project, probe)
            sent[execution_id] = time.perf_counter()
            await stack.producer.send(topics.EXECUTIONS, value, key=key)
            i += 1
            await asyncio.sleep(1 / PROBES_PER_S)

    started = time.perf_counter()
    await asyncio.gather(background_load(), probes())
    achieved = background / (time.perf_counter() - started)
    await caught_up(stack, f"done-{phase}")
    # The worker has read every probe, but its producer may still hold their notifications (they
    # go to other partitions than the sentinels' and leave in batches): wait for each probe's.
    deadline = time.perf_counter() + 60
    while True:
        arrived = {
            n["payload"]["data"]["executionId"]: t for t, n in stack.notes.of_project(probe_project)
        }
        if set(sent) <= set(arrived) or time.perf_counter() > deadline:
            break
        await asyncio.sleep(0.05)
    lat = sorted((arrived[e] - t) * 1000 for e, t in sent.items() if e in arrived)
    return {
        "background_events_per_s": round(achieved),
        "events_per_record": per_record,
        "probes": len(sent),
        "alerts_received": len(lat),
        "p50_ms": round(percentile(lat, 0.5), 1),
        "p99_ms": round(percentile(lat, 0.99), 1),
        "max_ms": round(max(lat), 1) if lat else None,
    }


async def caught_up(stack: Stack, prefix: str, timeout_s: float = 300) -> None:
    """Wait until the worker has handled everything produced so far, on every partition."""
    await stack.produce(topics.EXECUTIONS, sentinels(prefix))
    deadline = time.perf_counter() + timeout_s
    while len(stack.notes.of_project(SENTINEL, prefix)) < PARTITIONS:
        assert time.perf_counter() < deadline, "the worker did not catch up"
        await asyncio.sleep(0.05)


class Standalone:
    """The engine alone: tables in dicts, notifications counted and discarded, no Kafka."""

    def __init__(self, with_subs: bool, silenced: bool = False) -> None:
        settings = Settings(data_dir=Path("unused"), clickhouse_url="", database_url="")
        views = Views()
        if with_subs:
            for record in subscriptions(int(time.time() * 1000) - 3_600_000):
                for p in range(PARTITIONS):
                    views.preload(p, f"{record.id}/{p}".encode(), msgspec.json.encode(record))
        if silenced:
            for quiet in silences(int(time.time() * 1000)):
                for p in range(PARTITIONS):
                    views.preload_silence(p, f"{quiet.id}/{p}".encode(), msgspec.json.encode(quiet))
        self.sent = 0
        self.tables = Tables({}, {})
        self.engine = Engine(
            settings, PARTITIONS, self.tables, views, self._send, TickGate(_start), _dead_letter
        )

    async def _send(self, records: Any) -> None:
        self.sent += len(records)

    async def run(self, pairs: Pairs, first_offset: int = 0) -> tuple[float, float]:
        """Handle the records in the worker's batches: (seconds, CPU seconds) it took."""
        messages = [
            SimpleNamespace(topic=topics.EXECUTIONS, partition=partition_of(key, PARTITIONS),
                            offset=first_offset + i, key=key, value=value, timestamp=time.time())
            for i, (key, value) in enumerate(pairs)
        ]  # fmt: skip
        started, cpu = time.perf_counter(), time.process_time()
        for at in range(0, len(messages), BATCH):
            await self.engine.handle_batch(messages[at : at + BATCH])
        return time.perf_counter() - started, time.process_time() - cpu


async def _start(_partition: int) -> int:
    return 0


async def _dead_letter(_message: Any, reason: str) -> None:
    raise AssertionError(f"dead letter: {reason}")


async def evaluator_only(
    load: Pairs, with_subs: bool, events: int, silenced: bool = False
) -> dict[str, Any]:
    """Events/s of the engine alone (`Standalone`)."""
    alone = Standalone(with_subs, silenced)
    elapsed, cpu = await alone.run(load)
    return {
        "events_per_s": round(events / elapsed),
        "events_per_cpu_s": round(events / cpu),
        "notifications": alone.sent,
    }


async def measure(
    work: Path,
    name: str,
    with_subs: bool,
    warmup: Pairs,
    load: Pairs,
    silenced: bool = False,
    with_latency: bool = False,
) -> dict[str, Any]:
    stack = await Stack.start(work, name)
    try:
        result = await throughput(stack, with_subs, warmup, load, EVENTS, silenced)
        progress(f"{name}: {result}")
        if with_latency:
            result["latency"] = []
            for background, per_record in (
                (0, 1),
                (BACKGROUND_PER_S, GROUPED),
                (BACKGROUND_PER_S, 1),
            ):
                progress(f"{name}: latency under {background} events/s, {per_record} per record")
                result["latency"].append(await latency(stack, background, per_record, silenced))
        return result
    finally:
        await stack.stop()


async def main() -> dict[str, Any]:
    configure_logging("warning")
    warmup = load_records(WARMUP, seed=1)
    load = load_records(EVENTS)
    progress("evaluator alone")
    grouped = load_records(EVENTS, per_record=GROUPED)
    alone = {
        "with_subscriptions": await evaluator_only(load, True, EVENTS),
        "without_subscriptions": await evaluator_only(load, False, EVENTS),
        f"with_subscriptions_{GROUPED}_events_per_record": await evaluator_only(
            grouped, True, EVENTS
        ),
        "with_silences": await evaluator_only(load, True, EVENTS, silenced=True),
    }
    with TemporaryDirectory(prefix="bench-alerts-") as tmp:
        work = Path(tmp)
        progress("the faust floor: the same load read by a worker that does nothing else")
        floor = await faust_floor(work, load)
        progress(f"faust floor: {floor}")
        bare = await measure(work, "without_subscriptions", False, warmup, load)
        batched = await measure(work, "grouped", True, warmup, grouped)
        subscribed = await measure(
            work, "with_subscriptions", True, warmup, load, with_latency=True
        )
        silenced = await measure(
            work, "with_silences", True, warmup, load, silenced=True, with_latency=True
        )
    lat = subscribed.pop("latency")
    silenced_lat = silenced.pop("latency")
    return {
        "bench": "alerts",
        "cpus": os.cpu_count(),
        "partitions": PARTITIONS,
        "subscriptions": PROJECTS * SUBS_PER_PROJECT,
        "workflows": PROJECTS * WORKFLOWS_PER_PROJECT,
        "silences": PROJECTS,
        "worker": {
            "with_subscriptions": subscribed,
            "without_subscriptions": bare,
            "rule_cost_ratio": round(bare["events_per_s"] / subscribed["events_per_s"], 2),
            # The ratio, by wall clock and by CPU time (the worker's own CPU against the
            # evaluator's: robust to other load on the machine, which the wall clock is not).
            "over_evaluator": ratio(
                subscribed["events_per_s"], alone["with_subscriptions"]["events_per_s"]
            ),
            "over_evaluator_cpu": ratio(
                subscribed["events_per_cpu_s"], alone["with_subscriptions"]["events_per_cpu_s"]
            ),
            f"with_subscriptions_{GROUPED}_events_per_record": batched,
            "with_silences": silenced,
            "silence_cost_ratio": ratio(subscribed["events_per_s"], silenced["events_per_s"]),
            "muted_share": muted_share(subscribed, silenced),
        },
        "faust_floor": {
            **floor,
            # A worker that reads like the floor and evaluates like the evaluator alone, and does
            # nothing else (no tables, no produced records), would reach this share of the
            # evaluator's rate: the one-event-per-record ceiling of any faust worker here.
            "ceiling_over_evaluator": ceiling(
                floor["records_per_s"], alone["with_subscriptions"]["events_per_s"]
            ),
            "ceiling_over_evaluator_cpu": ceiling(
                floor["records_per_cpu_s"], alone["with_subscriptions"]["events_per_cpu_s"]
            ),
        },
        "evaluator_alone": {
            **alone,
            "rule_cost_ratio": round(
                alone["without_subscriptions"]["events_per_s"]
                / alone["with_subscriptions"]["events_per_s"],
                2,
            ),
            "silence_cost_ratio": ratio(
                alone["with_subscriptions"]["events_per_s"],
                alone["with_silences"]["events_per_s"],
            ),
            "muted_share": muted_share(alone["with_subscriptions"], alone["with_silences"]),
        },
        "latency": lat,
        "latency_with_silences": [
            {
                **with_silences,
                "p50_ratio": ratio(with_silences["p50_ms"], without["p50_ms"]),
                "p99_ratio": ratio(with_silences["p99_ms"], without["p99_ms"]),
            }
            for without, with_silences in zip(lat, silenced_lat, strict=True)
        ],
        "targets": TARGETS,
    }


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator to two places (None when either is missing or zero)."""
    return round(numerator / denominator, 2) if numerator and denominator else None


def ceiling(floor_per_s: float, evaluator_per_s: float) -> float:
    """The rate of reading at `floor_per_s` then evaluating at `evaluator_per_s`, one after the
    other, over the evaluator's rate alone."""
    return round(floor_per_s / (floor_per_s + evaluator_per_s), 3)


def muted_share(without: dict[str, Any], silenced: dict[str, Any]) -> float | None:
    """The share of the notifications of the run without silences that the silences took."""
    sent = without["notifications"]
    return round(1 - silenced["notifications"] / sent, 3) if sent else None


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main()), indent=2))
