"""The alert engine as it runs: `codecourier alerts` processes against the embedded broker.

Records go in as the API and the outbox write them (ExecutionRecord v2, SubscriptionRecord on
every partition); notifications are read back from `notifications`. Every test uses its own
project, so tests sharing a worker cannot see each other's notifications.
"""

import asyncio
import contextlib
import secrets
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from schemas import topics
from schemas.events import ExecutionCompleted, topic_key
from schemas.notifications import SubscriptionRecord
from services.alerts.ticks import OffsetReader, Tick, TickGate
from services.alerts.views import partition_of
from services.common.broker import EmbeddedBroker
from services.common.kafka import ensure_topics
from tests.factories import execution, execution_record
from tests.processes import CLI, service_env, start_service

Note = dict[str, Any]
MINUTE_H = 1 / 60
ISOLATED_PARTITIONS = 3


class Worker:
    """A `codecourier alerts` child process."""

    def __init__(self, bootstrap: str, partitions: int, group: str, log_path: Path, **env: str):
        settings = {
            "CC_KAFKA_PARTITIONS": str(partitions),
            "CC_ALERTS_GROUP": group,
            "CC_TICK_SECONDS": "1",
            **env,
        }
        self.env = service_env(log_path.parent / "data", bootstrap=bootstrap, settings=settings)
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> "Worker":
        """Start the process (a second start after a kill reuses group and settings)."""
        self.process = start_service([CLI, "alerts"], self.env, self.log_path, append=True)
        return self

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send `sig` and wait for the exit; SIGKILL if a SIGTERM is not enough."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class Harness:
    """Produces records to the broker and collects what arrives on `notifications`."""

    def __init__(self, bootstrap: str, partitions: int) -> None:
        self.bootstrap = bootstrap
        self.partitions = partitions
        self.producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        self.notes: list[Note] = []
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Connect, and read `notifications` from its current end on."""
        await self.producer.start()
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        await consumer.start()
        tps = [TopicPartition(topics.NOTIFICATIONS, p) for p in range(self.partitions)]
        consumer.assign(tps)
        for tp, end in (await _ends(self.bootstrap, tps)).items():
            consumer.seek(tp, end)
        self._reader = asyncio.create_task(self._read(consumer))

    async def stop(self) -> None:
        """Disconnect."""
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self.producer.stop()

    async def _read(self, consumer: AIOKafkaConsumer) -> None:
        try:
            while True:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    for record in records:
                        note = msgspec.json.decode(record.value)
                        note["_arrivedAt"] = time.time()
                        self.notes.append(note)
        finally:
            await consumer.stop()

    async def subscribe(self, record: SubscriptionRecord) -> None:
        """Publish a subscription to every partition, as the outbox relay does."""
        value = msgspec.json.encode(record)
        for p in range(self.partitions):
            key = f"{record.id}/{p}".encode()
            await (await self.producer.send(topics.SUBSCRIPTIONS, value, key=key, partition=p))

    async def execute(self, project: str, *events: ExecutionCompleted, plan: str = "pro") -> None:
        """Publish one ExecutionRecord per event (key: project/workflow)."""
        for event in events:
            record = execution_record(
                project, event, received_at_ms=int(time.time() * 1000), retention_days=7, plan=plan
            )
            key = topic_key(project, event.workflowId)
            await (await self.producer.send(topics.EXECUTIONS, record, key=key))

    def of(self, sub_id: str, **match: Any) -> list[Note]:
        """Notifications of a subscription, optionally filtered by payload type."""
        return [
            n
            for n in self.notes
            if n["subscriptionId"] == sub_id
            and all(n["payload"].get(k) == v for k, v in match.items())
        ]

    async def wait_for(
        self, check: Callable[[], bool], timeout_s: float, what: str = "condition"
    ) -> None:
        """Poll until `check()` holds."""
        deadline = time.monotonic() + timeout_s
        while not check():
            if time.monotonic() > deadline:
                seen = sorted({n["subscriptionId"] for n in self.notes})
                raise AssertionError(f"timed out after {timeout_s} s waiting for {what}; {seen}")
            await asyncio.sleep(0.1)

    async def ready(self, project: str, workflow_id: str, timeout_s: float = 45) -> None:
        """Wait until the subscriptions published so far are applied on a workflow's partition.

        A plain probe subscription is published last; once a probe execution on the same
        partition notifies it, every earlier subscription record of that partition was applied.
        """
        probe_sub = sub(f"ntf_probe_{secrets.token_hex(4)}", project, allWorkflows=False)
        probe_wf = self.sibling(project, workflow_id)
        await self.subscribe(msgspec.structs.replace(probe_sub, workflowIds=[probe_wf]))
        deadline = time.monotonic() + timeout_s
        while not self.of(probe_sub.id):
            if time.monotonic() > deadline:
                raise AssertionError("the worker never applied the subscriptions")
            await self.execute(project, execution(f"probe-{secrets.token_hex(4)}", probe_wf))
            with contextlib.suppress(AssertionError):
                await self.wait_for(lambda: bool(self.of(probe_sub.id)), 1.0)

    def sibling(self, project: str, workflow_id: str, nth: int = 0) -> str:
        """Another workflow id of the project on the same partition as `workflow_id`."""
        target = partition_of(topic_key(project, workflow_id), self.partitions)
        found = 0
        for i in range(10_000):
            candidate = f"{workflow_id}-sib{i}"
            if partition_of(topic_key(project, candidate), self.partitions) == target:
                if found == nth:
                    return candidate
                found += 1
        raise AssertionError("no sibling workflow found")


async def _ends(bootstrap: str, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
    reader = OffsetReader(bootstrap)
    try:
        return await reader.ends(tps)
    finally:
        await reader.stop()


def sub(sub_id: str, project: str, **fields: Any) -> SubscriptionRecord:
    """A subscription record with the API's defaults."""
    base: dict[str, Any] = {
        "v": 1, "id": sub_id, "projectId": project, "version": 1, "deleted": False,
        "notificationType": "webhook", "workflowIds": [], "allWorkflows": True,
        "levelFilter": ["info", "error"], "triggerFilter": [], "includeFinalOutput": False,
        "includeTraceSpans": False, "includeRateLimits": False, "includeUsageData": False,
        "active": True, "createdAtMs": int(time.time() * 1000),
        "destination": {"type": "webhook", "url": "https://hooks.example.com/cc"},
    }  # fmt: skip
    return msgspec.convert({**base, **fields}, SubscriptionRecord)


def project_id() -> str:
    """A project of its own for one test."""
    return f"prj_{secrets.token_hex(5)}"


@pytest.fixture(scope="module")
async def partitions(broker: str) -> int:
    """The co-partitioned topics' partition count on the session broker."""
    await ensure_topics(broker, 3)
    reader = OffsetReader(broker)
    try:
        counts = await reader.partition_counts(topics.CO_PARTITIONED)
    finally:
        await reader.stop()
    assert len(set(counts.values())) == 1, counts
    return counts[topics.EXECUTIONS]


@pytest.fixture(scope="module")
def worker(
    broker: str, partitions: int, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Worker]:
    """One worker shared by the tests that do not stop it."""
    path = tmp_path_factory.mktemp("alerts") / "worker.log"
    running = Worker(broker, partitions, f"alerts-it-{secrets.token_hex(4)}", path).start()
    yield running
    running.kill(signal.SIGTERM)


@pytest.fixture
async def harness(broker: str, partitions: int) -> AsyncIterator[Harness]:
    """Producer and notification reader for one test."""
    running = Harness(broker, partitions)
    await running.start()
    yield running
    await running.stop()


@pytest.fixture
async def isolated(tmp_path: Path) -> AsyncIterator[Harness]:
    """A broker of the test's own: every notification on it comes from the test's workers."""
    embedded = EmbeddedBroker(0, tmp_path / "broker.log")
    bootstrap = await embedded.start()
    try:
        await ensure_topics(bootstrap, ISOLATED_PARTITIONS)
        running = Harness(bootstrap, ISOLATED_PARTITIONS)
        await running.start()
        yield running
        await running.stop()
    finally:
        embedded.stop()


# ---- the tick gate (no broker) ---------------------------------------------------------------


def _tick(partition: int, at_ms: int, end: int) -> Tick:
    return Tick(1, partition, at_ms, end)


async def test_gate_holds_a_tick_until_executions_reach_its_offset() -> None:
    async def committed(partition: int) -> int:
        return 10

    gate = TickGate(committed)
    assert await gate.admit(_tick(0, 1_000, 12)) is None
    assert await gate.admit(_tick(0, 2_000, 13)) is None
    assert gate.executed(0, 10) is None
    assert gate.executed(0, 11) == _tick(0, 1_000, 12)
    assert gate.executed(0, 12) == _tick(0, 2_000, 13)
    assert gate.executed(0, 13) is None


async def test_gate_applies_at_once_when_nothing_is_behind() -> None:
    async def committed(partition: int) -> int:
        return 5

    gate = TickGate(committed)
    assert await gate.admit(_tick(1, 1_000, 5)) == _tick(1, 1_000, 5)
    gate.reset()
    assert await gate.admit(_tick(1, 2_000, 4)) == _tick(1, 2_000, 4)


async def test_gate_applies_only_the_newest_of_several_due_ticks() -> None:
    async def committed(partition: int) -> int:
        return 0

    gate = TickGate(committed)
    for at in (1_000, 2_000, 3_000):
        await gate.admit(_tick(2, at, 3))
    assert gate.executed(2, 2) == _tick(2, 3_000, 3)


# ---- plain subscriptions ---------------------------------------------------------------------


async def test_plain_subscription_notifies_each_matching_execution_once(
    worker: Worker, harness: Harness
) -> None:
    project = project_id()
    filtered = sub(
        "ntf_filtered_" + project, project, allWorkflows=False, workflowIds=["wf-a"],
        levelFilter=["error"], triggerFilter=["api"], includeFinalOutput=True,
        includeRateLimits=True, includeUsageData=True,
    )  # fmt: skip
    everything = sub("ntf_all_" + project, project, notificationType="email",
                     includeTraceSpans=True)  # fmt: skip
    await harness.subscribe(filtered)
    await harness.subscribe(everything)
    await harness.ready(project, "wf-a")
    await harness.ready(project, "wf-b")
    spans = [{"id": "s1", "name": "block"}]
    match = execution("x1", "wf-a", level="error", cost=0.25, finalOutput={"ok": False},
                      traceSpans=spans)  # fmt: skip
    await harness.execute(project, match)
    await harness.execute(project, execution("x2", "wf-a", level="info"))  # level filtered
    await harness.execute(project, execution("x3", "wf-a", level="error", trigger="webhook"))
    await harness.execute(project, execution("x4", "wf-b", level="error"))  # not listed
    await harness.execute(project, match)  # a resend of x1

    def executions(sub_id: str) -> list[str]:
        ids = (n["payload"]["data"]["executionId"] for n in harness.of(sub_id))
        return sorted(i for i in ids if not i.startswith("probe-"))

    await harness.wait_for(lambda: len(executions(everything.id)) >= 4, 30, "4 deliveries")
    await asyncio.sleep(2)  # a late duplicate would arrive by now

    assert executions(filtered.id) == ["x1"]
    assert executions(everything.id) == [
        "x1", "x2", "x3", "x4",
    ]  # fmt: skip
    note = harness.of(filtered.id)[0]
    body = note["payload"]
    assert note["eventId"] == body["id"] and body["id"].startswith("evt_")
    assert note["deliveryId"].startswith("dlv_") and note["projectId"] == project
    assert note["destination"] == {"type": "webhook", "url": "https://hooks.example.com/cc"}
    assert body["type"] == "workflow.execution.completed"
    data = body["data"]
    assert data["status"] == "error" and data["level"] == "error" and data["trigger"] == "api"
    assert data["finalOutput"] == {"ok": False} and "traceSpans" not in data
    assert data["rateLimits"] == {
        "sync": {"requestsPerMinute": 60, "maxBurst": 120},
        "async": {"requestsPerMinute": 200, "maxBurst": 400},
    }
    assert data["usage"] == {
        "currentPeriodCost": 0.25, "limit": 100.0, "plan": "pro", "isExceeded": False,
    }  # fmt: skip
    assert body["links"]["execution"] == "/v1/logs/executions/x1"
    assert body["links"]["log"].startswith("/v1/logs/log_")
    email = [n for n in harness.of(everything.id) if n["payload"]["data"]["executionId"] == "x1"]
    assert "traceSpans" not in email[0]["payload"]["data"]  # never to email or Slack


async def test_faust_creates_its_changelogs_with_the_source_partition_count(
    worker: Worker, harness: Harness
) -> None:
    await harness.ready(project_id(), "wf")  # the worker has started and recovered its tables
    group = worker.env["CC_ALERTS_GROUP"]
    changelogs = [f"{group}-{t}-changelog" for t in ("workflow-states", "subscriptions")]
    reader = OffsetReader(harness.bootstrap)
    try:
        counts = await reader.partition_counts([*changelogs, *topics.CO_PARTITIONED])
    finally:
        await reader.stop()
    assert counts == dict.fromkeys(counts, harness.partitions)


@pytest.mark.slow
async def test_the_worker_writes_one_json_line_per_entry_and_no_faust_chatter(
    isolated: Harness, tmp_path: Path
) -> None:
    harness = isolated  # no other worker answers `ready` for this one
    path = tmp_path / "worker.log"  # stdout and stderr together, as `codecourier up` has them
    worker = Worker(harness.bootstrap, harness.partitions, f"alerts-log-{secrets.token_hex(4)}",
                    path, CC_LOG_LEVEL="info").start()  # fmt: skip
    try:
        await harness.ready(project_id(), "wf")  # started, recovered its tables, evaluating
    finally:
        worker.kill(signal.SIGTERM)
    lines = path.read_bytes().splitlines()
    entries = [msgspec.json.decode(line) for line in lines]  # no banner, table or faust line
    assert all({"level", "event", "timestamp"} <= entry.keys() for entry in entries), lines
    events = [entry["event"] for entry in entries]
    assert "alerts.starting" in events and "alerts.table_indexed" in events, events
    assert events[-1] == "alerts.stopped", events


# ---- alert rules -----------------------------------------------------------------------------


async def test_consecutive_failures_alert_fires_once_with_the_alert_object(
    worker: Worker, harness: Harness
) -> None:
    project = project_id()
    rule = sub("ntf_cf_" + project, project, allWorkflows=False, workflowIds=["wf"],
               alertConfig={"rule": "consecutive_failures", "consecutiveFailures": 3})  # fmt: skip
    await harness.subscribe(rule)
    await harness.ready(project, "wf")
    start = datetime.now(UTC) - timedelta(minutes=5)
    failures = [
        execution(f"f{i}", "wf", level="error", ended=start + timedelta(seconds=i))
        for i in range(5)
    ]
    await harness.execute(project, *failures)
    await harness.execute(project, failures[2])  # a duplicate does not advance the streak
    await harness.wait_for(lambda: bool(harness.of(rule.id)), 30, "the alert")
    await asyncio.sleep(2)

    notes = harness.of(rule.id)
    assert len(notes) == 1, notes
    body = notes[0]["payload"]
    assert body["type"] == "workflow.execution.completed"
    assert body["data"]["executionId"] == "f2"
    alert = body["data"]["alert"]
    assert alert["id"].startswith("alr_") and alert["rule"] == "consecutive_failures"
    assert alert["observed"] == 3 and alert["threshold"] == 3
    assert alert["notificationId"] == rule.id
    assert "3 consecutive failures" in alert["reason"]


async def test_poison_goes_to_the_dead_letter_topic_and_the_next_execution_still_alerts(
    worker: Worker, harness: Harness
) -> None:
    # Finding 1 of issue 9: seven executions of 10**40 ms once crashed the engine for good. The
    # API refuses them now; written straight to the topic they are dead-lettered like any poison.
    project = project_id()
    rule = sub("ntf_spike_" + project, project, allWorkflows=False, workflowIds=["wf"],
               alertConfig={"rule": "latency_spike", "latencySpikePercent": 10})  # fmt: skip
    await harness.subscribe(rule)
    await harness.ready(project, "wf")
    start = datetime.now(UTC) - timedelta(minutes=5)

    def run(name: str, second: int, duration_ms: int) -> ExecutionCompleted:
        event = execution(name, "wf", ended=start + timedelta(seconds=second))
        return msgspec.structs.replace(event, totalDurationMs=duration_ms)

    await harness.execute(project, *[run(f"huge-{i}", i, 10**40) for i in range(7)])
    poison = (
        b'{"kind":"execution","v":2,"projectId":"' + project.encode() + b'","receivedAtMs":1,'
        b'"retentionDays":7,"events":[' + b"[" * 50_000 + b"]" * 50_000 + b"]}"
    )
    key = topic_key(project, "wf")
    await (await harness.producer.send(topics.EXECUTIONS, poison, key=key))
    await harness.execute(project, *[run(f"base-{i}", 10 + i, 1000) for i in range(5)])
    await harness.execute(project, run("spike", 30, 10_000))
    await harness.wait_for(lambda: bool(harness.of(rule.id)), 30, "the alert after the poison")
    assert [n["payload"]["data"]["executionId"] for n in harness.of(rule.id)] == ["spike"]

    dead = await _dead_letters(harness.bootstrap, key, 8)
    assert len(dead) == 8, "the poison and the seven huge records are on alerts.dlq"
    deep = [d for d in dead if d.value == poison]
    assert len(deep) == 1
    headers = dict(deep[0].headers)
    assert headers["cc-consumer"] == b"alerts"
    assert headers["cc-error"].startswith(b"RecursionError")
    assert headers["cc-source"].startswith(b"executions/")


async def _dead_letters(
    bootstrap: str, key: bytes, count: int = 1, timeout_s: float = 30
) -> list[Any]:
    """The records of `alerts.dlq` with this key, once there are `count` of them."""
    consumer = AIOKafkaConsumer(
        topics.ALERTS_DLQ, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
        enable_auto_commit=False,
    )  # fmt: skip
    await consumer.start()
    found: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(found) < count and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                found += [r for r in records if r.key == key]
    finally:
        await consumer.stop()
    return found


async def test_no_activity_fires_from_ticks_then_resolves_on_the_next_execution(
    worker: Worker, harness: Harness
) -> None:
    project = project_id()
    armed = datetime.now(UTC) - timedelta(seconds=45)  # the deadline is 15 s from now
    rule = sub(
        "ntf_idle_" + project, project, allWorkflows=False, workflowIds=["wf"],
        createdAtMs=int(armed.timestamp() * 1000),
        alertConfig={"rule": "no_activity", "inactivityHours": MINUTE_H, "notifyOnResolve": True},
    )  # fmt: skip
    await harness.subscribe(rule)
    await harness.ready(project, "wf")
    deadline_s = armed.timestamp() + 60
    await harness.wait_for(lambda: bool(harness.of(rule.id)), 40, "the no_activity alert")

    fired = harness.of(rule.id)[0]
    assert fired["payload"]["type"] == "workflow.alert.no_activity"
    assert fired["payload"]["timestamp"] >= deadline_s * 1000
    assert fired["_arrivedAt"] - deadline_s < 60  # detected within a minute of the deadline
    assert fired["payload"]["data"]["alert"]["rule"] == "no_activity"
    assert fired["payload"]["links"] == {}
    await harness.execute(project, execution("back", "wf"))
    await harness.wait_for(lambda: len(harness.of(rule.id)) >= 2, 30, "the resolution")
    resolved = harness.of(rule.id)[1]
    assert resolved["payload"]["type"] == "workflow.alert.resolved"
    assert resolved["payload"]["data"]["executionId"] == "back"
    assert resolved["payload"]["data"]["alert"]["reason"].startswith("Resolved:")


# ---- restarts and replays --------------------------------------------------------------------


@pytest.mark.slow
async def test_no_false_no_activity_during_a_consumer_backlog(
    isolated: Harness, tmp_path: Path
) -> None:
    harness = isolated
    project = project_id()
    group = f"alerts-backlog-{secrets.token_hex(4)}"
    worker = Worker(harness.bootstrap, harness.partitions, group, tmp_path / "worker.log").start()
    try:
        seen = sub("ntf_seen_" + project, project, allWorkflows=False, workflowIds=["wf"])
        await harness.subscribe(seen)
        await harness.ready(project, "wf")  # the worker is up
        # Armed together with the last execution the worker sees before it stops: the deadline
        # is 18 s from now.
        last = datetime.now(UTC) - timedelta(seconds=42)
        deadline_s = last.timestamp() + 60
        rule = sub(
            "ntf_idle_" + project, project, allWorkflows=False, workflowIds=["wf"],
            createdAtMs=int(last.timestamp() * 1000),
            alertConfig={"rule": "no_activity", "inactivityHours": MINUTE_H},
        )  # fmt: skip
        await harness.subscribe(rule)
        await harness.ready(project, "wf")
        await harness.execute(project, execution("before", "wf", ended=last))
        await harness.wait_for(lambda: bool(harness.of(seen.id)), 20, "the execution")
        await _until_committed(harness, group, "wf", project)
        worker.kill()
        # While it is down the workflow keeps running, behind a backlog on its partition.
        filler = harness.sibling(project, "wf")
        await harness.execute(project, *(execution(f"fill-{i}", filler) for i in range(6000)))
        await harness.execute(project, execution("during", "wf"))
        assert time.time() < deadline_s - 1, "too slow: the workflow really was idle for 1 min"
        await asyncio.sleep(deadline_s + 2 - time.time())
        worker.start()  # ticks from now on are past the deadline of "before"
        await harness.wait_for(lambda: len(harness.of(seen.id)) >= 2, 50, "the backlog")
        await asyncio.sleep(3)  # ticks keep coming after the backlog
        assert harness.of(rule.id) == []
    finally:
        worker.kill()


@pytest.mark.slow
async def test_cooldown_survives_kill_minus_nine(isolated: Harness, tmp_path: Path) -> None:
    harness = isolated
    project = project_id()
    group = f"alerts-kill-{secrets.token_hex(4)}"
    worker = Worker(harness.bootstrap, harness.partitions, group, tmp_path / "worker.log").start()
    try:
        rule = sub("ntf_cf_" + project, project, allWorkflows=True,
                   alertConfig={"rule": "consecutive_failures", "consecutiveFailures": 2})  # fmt: skip
        await harness.subscribe(rule)
        await harness.ready(project, "wf")
        t0 = datetime.now(UTC) - timedelta(hours=2)
        others = [execution(f"o{n}", harness.sibling(project, "wf", n)) for n in range(1, 60)]
        # The first failure's state write ends a burst: the tail of a multi-record changelog batch.
        first = execution("a1", "wf", level="error", ended=t0)
        await harness.execute(project, *others[:30], first)
        await _kill_after_commit(harness, worker, group, "wf", project)
        await harness.ready(project, "wf")
        second = execution("a2", "wf", level="error", ended=t0 + timedelta(seconds=1))
        await harness.execute(project, second, *others[30:])
        await harness.wait_for(lambda: bool(harness.of(rule.id)), 20, "the alert on a2")
        await _kill_after_commit(harness, worker, group, "wf", project)
        await harness.ready(project, "wf")
        again = [
            execution(f"a{i}", "wf", level="error", ended=t0 + timedelta(minutes=i))
            for i in (3, 4, 59)
        ]  # still failing within the hour: suppressed
        await harness.execute(project, *again)
        other = [execution(f"b{i}", "wf2", level="error", ended=t0) for i in (1, 2)]
        await harness.execute(project, *other)  # another workflow keeps its own cooldown
        late = execution("a61", "wf", level="error", ended=t0 + timedelta(minutes=61))
        await harness.execute(project, late)
        await harness.wait_for(lambda: len(harness.of(rule.id)) >= 3, 30, "3 notifications")
        await asyncio.sleep(2)
        by_execution = {
            n["payload"]["data"]["executionId"]: n["payload"]["data"]["alert"]["id"]
            for n in harness.of(rule.id)
        }
        assert set(by_execution) == {"a2", "b2", "a61"}
        assert len({n["eventId"] for n in harness.of(rule.id)}) == 3
        # a61 repeats the alert of a2 (one episode: the workflow never stopped failing)
        assert by_execution["a61"] == by_execution["a2"] != by_execution["b2"]
        assert len(_alert_ids(harness, rule.id)) == 2
    finally:
        worker.kill()


@pytest.mark.slow
async def test_a_restarted_worker_indexes_the_workflows_in_its_store(
    isolated: Harness, tmp_path: Path
) -> None:
    # The workflow's state is in the worker's RocksDB store and its changelog write is before
    # the store's persisted offset, so a restart does not replay it: only the index built from
    # the store itself tells the ticks that there is a workflow to watch.
    harness = isolated
    project = project_id()
    group = f"alerts-store-{secrets.token_hex(4)}"
    worker = Worker(harness.bootstrap, harness.partitions, group, tmp_path / "worker.log",
                    CC_LOG_LEVEL="info").start()  # fmt: skip
    try:
        armed = datetime.now(UTC) - timedelta(seconds=20)  # the deadline is 40 s from now
        rule = sub(
            "ntf_idle_" + project, project, allWorkflows=False, workflowIds=["wf"],
            createdAtMs=int(armed.timestamp() * 1000),
            alertConfig={"rule": "no_activity", "inactivityHours": MINUTE_H},
        )  # fmt: skip
        await harness.subscribe(rule)
        await harness.ready(project, "wf")
        await _kill_after_commit(harness, worker, group, "wf", project)
        await harness.wait_for(lambda: bool(harness.of(rule.id)), 100, "the no_activity alert")
        assert harness.of(rule.id)[0]["payload"]["type"] == "workflow.alert.no_activity"
        indexed = [
            msgspec.json.decode(line)["rows"]
            for line in (tmp_path / "worker.log").read_text().splitlines()
            if '"alerts.table_indexed"' in line and '"workflow-states"' in line
        ]
        assert indexed[0] == 0 and indexed[-1] >= 1  # an empty store, then what it kept
    finally:
        worker.kill()


@pytest.mark.slow
async def test_a_member_without_a_store_recovers_the_rows_from_the_changelogs(
    isolated: Harness, tmp_path: Path
) -> None:
    # A batch hands each partition's rows to the changelog itself, not through faust's table
    # (`services.alerts.transport.write_rows`); a member on another machine, with no store, must
    # rebuild every row from them: the third failure alerts only if the first two were recovered.
    harness = isolated
    project = project_id()
    group = f"alerts-changelog-{secrets.token_hex(4)}"
    rule = sub("ntf_cf_" + project, project, allWorkflows=True,
               alertConfig={"rule": "consecutive_failures", "consecutiveFailures": 3})  # fmt: skip
    t0 = datetime.now(UTC) - timedelta(hours=1)
    # A state row for each workflow, all on the partition of "wf".
    others = [execution(f"o{n}", harness.sibling(project, "wf", n)) for n in range(1, 80)]
    for machine in ("first", "second"):  # a data directory (and store) each
        (tmp_path / machine).mkdir()
    first = Worker(harness.bootstrap, harness.partitions, group,
                   tmp_path / "first" / "worker.log").start()  # fmt: skip
    try:
        await harness.subscribe(rule)
        await harness.ready(project, "wf")
        await harness.execute(
            project, execution("a1", "wf", level="error", ended=t0), *others,
            execution("a2", "wf", level="error", ended=t0 + timedelta(seconds=1)),
        )  # fmt: skip
        await _until_committed(harness, group, "wf", project)
    finally:
        first.kill()
    assert not harness.of(rule.id)
    second = Worker(harness.bootstrap, harness.partitions, group,
                    tmp_path / "second" / "worker.log").start()  # fmt: skip
    try:
        await harness.ready(project, "wf")
        await harness.execute(
            project, execution("a3", "wf", level="error", ended=t0 + timedelta(seconds=2))
        )
        await harness.wait_for(lambda: bool(harness.of(rule.id)), 30, "the alert on a3")
        assert [n["payload"]["data"]["executionId"] for n in harness.of(rule.id)] == ["a3"]
    finally:
        second.kill()


async def _kill_after_commit(
    harness: Harness, worker: Worker, group: str, workflow_id: str, project: str
) -> None:
    """Wait until the group committed the workflow's partition to its end, kill -9, restart."""
    await _until_committed(harness, group, workflow_id, project)
    worker.kill()
    worker.start()


async def _until_committed(harness: Harness, group: str, workflow_id: str, project: str) -> None:
    """Wait until the group committed the workflow's partition to its end."""
    tp = TopicPartition(topics.EXECUTIONS, partition_of(topic_key(project, workflow_id),
                                                        harness.partitions))  # fmt: skip
    end = (await _ends(harness.bootstrap, [tp]))[tp]
    reader = OffsetReader(harness.bootstrap, group)
    try:
        deadline = time.monotonic() + 30
        while ((await reader.committed(tp)) or 0) < end:
            assert time.monotonic() < deadline, "the worker never committed its input"
            await asyncio.sleep(0.2)
    finally:
        await reader.stop()


@pytest.mark.slow
async def test_replay_into_a_fresh_worker_reproduces_the_alert_ids(
    isolated: Harness, tmp_path: Path
) -> None:
    harness = isolated
    project = project_id()
    first = Worker(harness.bootstrap, harness.partitions, f"alerts-replay-{secrets.token_hex(4)}",
                   tmp_path / "first.log", CC_LOG_LEVEL="info").start()  # fmt: skip
    try:
        now = datetime.now(UTC)
        rules = [
            sub("ntf_cf_" + project, project, alertConfig={
                "rule": "consecutive_failures", "consecutiveFailures": 2, "notifyOnResolve": True}),
            sub("ntf_lat_" + project, project, alertConfig={
                "rule": "latency_threshold", "durationThresholdMs": 1000}),
            sub("ntf_cost_" + project, project, alertConfig={
                "rule": "cost_threshold", "costThresholdDollars": 0.5}),
            sub("ntf_idle_" + project, project, allWorkflows=False, workflowIds=["wf1"],
                createdAtMs=int((now - timedelta(seconds=50)).timestamp() * 1000),
                alertConfig={"rule": "no_activity", "inactivityHours": MINUTE_H}),
        ]  # fmt: skip
        for rule in rules:
            await harness.subscribe(rule)
        await harness.ready(project, "wf1")
        await harness.ready(project, "wf2")
        # The log orders neither subscriptions nor ticks against executions, so the scenario does
        # not depend on it: the runs end before no_activity was armed, whose deadline (arming +
        # 1 min, 10 s from now) is the same whichever of them a replay reads first.
        start = now - timedelta(seconds=58)
        runs = [
            execution(f"r{i}", f"wf{1 + i % 2}", ended=start + timedelta(milliseconds=100 * i),
                      level="error" if i // 2 % 5 < 2 else "info", duration_ms=2000 if i % 7 == 0 else 50,
                      cost=0.75 if i % 6 == 0 else 0.01)
            for i in range(40)
        ]  # fmt: skip
        await harness.execute(project, *runs)
        ids = {r.id for r in rules}
        await harness.wait_for(
            lambda: {n["subscriptionId"] for n in harness.notes} >= ids, 40, "every rule to fire"
        )
        await asyncio.sleep(3)
        first.kill(signal.SIGTERM)
        original = _ids_by_sub(harness, ids)
        harness.notes.clear()

        fresh = Worker(harness.bootstrap, harness.partitions, f"alerts-replay-{secrets.token_hex(4)}",
                       tmp_path / "fresh.log", CC_LOG_LEVEL="info").start()  # fmt: skip
        try:
            total = sum(len(v) for v in original.values())
            await harness.wait_for(
                lambda: sum(len(v) for v in _ids_by_sub(harness, ids).values()) >= total,
                50,
                "the replay",
            )
            await asyncio.sleep(3)
            assert _ids_by_sub(harness, ids) == original
        finally:
            fresh.kill()
    finally:
        first.kill()


def _alert_ids(harness: Harness, sub_id: str) -> set[str]:
    return {n["payload"]["data"]["alert"]["id"] for n in harness.of(sub_id)}


def _ids_by_sub(harness: Harness, sub_ids: set[str]) -> dict[str, set[tuple[str, str, str]]]:
    return {
        s: {(n["payload"]["data"]["alert"]["id"], n["eventId"], n["deliveryId"])
            for n in harness.of(s)}
        for s in sub_ids
    }  # fmt: skip
