"""The dispatcher as a real process: retry schedule, finality, 410, and kill -9 with retries pending.

One `codecourier dispatcher` process per module, on a broker of its own (its delay tiers are
read by one consumer group only), with the retry schedule scaled down by `CC_RETRY_DELAYS`.
Receivers are real aiohttp servers on loopback; the egress allow-list opens loopback.
"""

import asyncio
import itertools
import signal
import subprocess
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from schemas import topics
from schemas.deliveries import AttemptsStarted, DeliveryAttempt, LogEntry
from schemas.destinations import WebhookDestination
from schemas.notifications import NotificationRecord
from services.common.broker import EmbeddedBroker
from services.common.controlplane import ControlPlane, SubscriptionRow, make_engine
from services.common.kafka import ensure_topics
from services.common.processes import free_port
from services.common.sealing import seal, sealing_key
from services.common.subscriptions import StoredConfig
from tests.processes import CLI, service_env, start_service
from tests.records import matching_records

PARTITIONS = 2
DELAYS = (0.3, 0.6, 0.9, 1.2, 1.5)
SECRET_KEY = "dispatcher-test-secret-key-0123456789"
SIGNING_SECRET = "whsec_dispatcher_test_secret"
SLACK = 0.6  # seconds of scheduling slack over a due time (poll, fetch and commit latency)


@dataclass
class Hit:
    """One request a receiver got."""

    at: float
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A webhook receiver: per path, a list of statuses to answer in turn (the last repeats)."""

    port: int = 0
    plans: dict[str, list[tuple[int, dict[str, str]]]] = field(default_factory=dict)
    hits: dict[str, list[Hit]] = field(default_factory=lambda: defaultdict(list))
    holds: dict[str, float] = field(default_factory=dict)  # path -> seconds to sit on hit 1

    async def handle(self, request: web.Request) -> web.Response:
        path = request.path.strip("/")
        self.hits[path].append(Hit(time.monotonic(), dict(request.headers), await request.read()))
        if len(self.hits[path]) == 1 and path in self.holds:
            await asyncio.sleep(self.holds[path])
        plan = self.plans.get(path) or [(200, {})]
        status, headers = plan[min(len(self.hits[path]), len(plan)) - 1]
        return web.Response(status=status, headers=headers, text=f"answer {status}")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"


@dataclass
class World:
    bootstrap: str
    receiver: Receiver
    producer: AIOKafkaProducer
    log: list[DeliveryAttempt]
    starts: list[AttemptsStarted]
    db_url: str
    env: dict[str, str]
    reader: Any = None
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    def start(self) -> None:
        assert self.log_path is not None
        self.process = start_service([CLI, "dispatcher"], self.env, self.log_path, append=True)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(20)

    def attempts(self, delivery_id: str) -> list[DeliveryAttempt]:
        return sorted((a for a in self.log if a.deliveryId == delivery_id), key=lambda a: a.attempt)


@pytest.fixture(scope="module")
def broker_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dispatcher")


@pytest.fixture(scope="module")
async def world(broker_dir: Path) -> AsyncIterator[World]:
    broker = EmbeddedBroker(0, broker_dir / "broker.log")
    bootstrap = await broker.start()
    await ensure_topics(bootstrap, PARTITIONS, retry_tiers=len(DELAYS))
    receiver = Receiver()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    receiver.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    db_url = f"sqlite+aiosqlite:///{broker_dir / 'control.db'}"
    cp = ControlPlane(make_engine(db_url))
    await cp.migrate(0)
    await cp.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    log: list[DeliveryAttempt] = []
    starts: list[AttemptsStarted] = []
    reader = asyncio.create_task(_read_log(bootstrap, log, starts))
    settings = {
        "CC_KAFKA_PARTITIONS": str(PARTITIONS),
        "CC_SECRET_KEY": SECRET_KEY,
        "CC_DATABASE_URL": db_url,
        "CC_RETRY_DELAYS": ",".join(str(d) for d in DELAYS),
        "CC_EGRESS_ALLOW_CIDRS": "127.0.0.0/8",
        "CC_DELIVERY_TIMEOUT_SECONDS": "5",
        "CC_METRICS_PORT": str(free_port()),
        # small lanes, so that a slow receiver fills its own
        "CC_DISPATCHER_LANE_IN_FLIGHT": "4",
        "CC_DISPATCHER_LANE_QUEUE": "4",
        "CC_DISPATCHER_LANE_STALL_SECONDS": "0.3",
    }
    env = service_env(broker_dir / "data", bootstrap=bootstrap, settings=settings)
    world = World(bootstrap, receiver, producer, log, starts, db_url, env,
                  log_path=broker_dir / "dispatcher.log")  # fmt: skip
    world.reader = reader
    world.start()
    try:
        yield world
    finally:
        world.kill(signal.SIGTERM)
        reader.cancel()
        await producer.stop()
        await runner.cleanup()
        broker.stop()


async def _read_log(
    bootstrap: str, into: list[DeliveryAttempt], starts: list[AttemptsStarted]
) -> None:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, metadata_max_age_ms=1000
    )
    await consumer.start()
    tps = [TopicPartition(topics.DELIVERY_LOG, p) for p in range(PARTITIONS)]
    consumer.assign(tps)
    for tp in tps:
        consumer.seek(tp, 0)
    decoder = msgspec.json.Decoder(LogEntry)
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=100)
            for records in batch.values():
                for r in records:
                    entry = decoder.decode(r.value or b"")
                    (into if isinstance(entry, DeliveryAttempt) else starts).append(entry)
    finally:
        await consumer.stop()


_counter = iter(range(1_000_000))


def notification(world: World, path: str, subscription: str = "ntf_test") -> NotificationRecord:
    n = next(_counter)
    sealed = seal(SIGNING_SECRET, sealing_key(SECRET_KEY), subscription)
    payload: dict[str, Any] = {
        "id": f"evt_{path}_{n}", "type": "workflow.execution.completed", "timestamp": 1,
        "data": {"workflowId": "wf", "executionId": f"ex-{n}", "status": "error"},
        "links": {"log": f"/v1/logs/log_{n}"},
    }  # fmt: skip
    return NotificationRecord(
        v=1, deliveryId=f"dlv_{path}_{n}", eventId=payload["id"], subscriptionId=subscription,
        projectId="prj_test", notificationType="webhook",
        destination=WebhookDestination(url=world.receiver.url(path)), payload=payload,
        createdAtMs=1,
        secretCiphertext=sealed,
    )  # fmt: skip


async def send(world: World, *records: NotificationRecord) -> None:
    for record in records:
        await world.producer.send_and_wait(
            topics.NOTIFICATIONS, msgspec.json.encode(record), key=record.subscriptionId.encode()
        )


async def until(check: Any, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def gaps(hits: list[Hit]) -> list[float]:
    return [b.at - a.at for a, b in itertools.pairwise(hits)]


async def test_500_500_200_is_three_attempts_with_one_delivery_id_on_schedule(world: World) -> None:
    world.receiver.plans["flaky"] = [(500, {}), (500, {}), (200, {})]
    record = notification(world, "flaky")
    await send(world, record)
    await until(
        lambda: [a.outcome for a in world.attempts(record.deliveryId)][-1:] == ["delivered"]
    )
    hits = world.receiver.hits["flaky"]
    assert len(hits) == 3
    assert {h.headers["sim-delivery-id"] for h in hits} == {record.deliveryId}
    assert {h.headers["Idempotency-Key"] for h in hits} == {record.deliveryId}
    assert {h.body for h in hits} == {hits[0].body}  # the same event every time
    for gap, delay in zip(gaps(hits), DELAYS, strict=False):
        assert delay <= gap <= delay * 1.1 + SLACK, (gap, delay)
    attempts = world.attempts(record.deliveryId)
    assert [(a.attempt, a.outcome, a.responseCode) for a in attempts] == [
        (1, "retrying", 500), (2, "retrying", 500), (3, "delivered", 200)
    ]  # fmt: skip
    assert msgspec.json.decode(attempts[0].payload) == record.payload  # kept for redelivery
    assert bytes(attempts[1].payload) == b"null"
    assert attempts[0].nextAttemptAtMs is not None and attempts[2].nextAttemptAtMs is None


async def test_400_is_final_after_one_attempt(world: World) -> None:
    world.receiver.plans["bad"] = [(400, {})]
    record = notification(world, "bad")
    await send(world, record)
    await until(lambda: world.attempts(record.deliveryId))
    await asyncio.sleep(DELAYS[0] * 1.1 + SLACK)
    assert len(world.receiver.hits["bad"]) == 1
    assert [(a.outcome, a.responseCode) for a in world.attempts(record.deliveryId)] == [
        ("failed", 400)
    ]


async def test_429_retry_after_is_honoured_when_longer(world: World) -> None:
    world.receiver.plans["busy"] = [(429, {"Retry-After": "2"}), (200, {})]
    record = notification(world, "busy")
    await send(world, record)
    await until(lambda: len(world.receiver.hits["busy"]) == 2, timeout_s=20)
    (gap,) = gaps(world.receiver.hits["busy"])
    assert 2.0 <= gap <= 2.0 + SLACK + 1.0


async def test_a_receiver_that_always_fails_gets_exactly_six_attempts(world: World) -> None:
    world.receiver.plans["down"] = [(503, {})]
    record = notification(world, "down")
    await send(world, record)
    await until(lambda: [a.outcome for a in world.attempts(record.deliveryId)][-1:] == ["failed"])
    await asyncio.sleep(DELAYS[-1] * 1.1 + SLACK)
    assert len(world.receiver.hits["down"]) == 6
    outcomes = [(a.attempt, a.outcome) for a in world.attempts(record.deliveryId)]
    assert outcomes == [(n, "retrying") for n in range(1, 6)] + [(6, "failed")]


async def test_410_gone_disables_the_subscription(world: World) -> None:
    cp = ControlPlane(make_engine(world.db_url))
    project = await cp.create_project("gone", "free", 1)
    row = SubscriptionRow(
        id="ntf_gone", project_id=project.id, notification_type="webhook",
        config_json=msgspec.json.encode(StoredConfig(
            workflowIds=[], allWorkflows=True, levelFilter=["error", "info"], triggerFilter=[],
            includeFinalOutput=False, includeTraceSpans=False, includeRateLimits=False,
            includeUsageData=False, active=True, webhookUrl=world.receiver.url("gone"),
        )).decode(),
        secret_ciphertext=None, previous_secret_ciphertext=None, previous_secret_until_ms=None,
        disabled_reason=None, created_at_ms=1, updated_at_ms=1, version=1,
    )  # fmt: skip
    await cp.save_subscription(row, [], create=True)
    world.receiver.plans["gone"] = [(410, {})]
    record = msgspec.structs.replace(
        notification(world, "gone", subscription="ntf_gone"), projectId=project.id
    )
    await send(world, record)
    await until(lambda: world.attempts(record.deliveryId))
    assert [a.outcome for a in world.attempts(record.deliveryId)] == ["failed"]
    for _ in range(100):
        stored = await cp.get_subscription(project.id, "ntf_gone")
        if stored is not None and stored.disabled_reason:
            break
        await asyncio.sleep(0.05)
    assert stored is not None and stored.disabled_reason and "410" in stored.disabled_reason
    assert stored.version == 2
    announced = await cp.pending_outbox(100)
    assert {m.topic for m in announced} == {topics.SUBSCRIPTIONS}
    assert len(announced) == PARTITIONS  # the change goes out to every partition
    await cp.close()


async def test_kill_9_with_retries_pending_loses_and_doubles_no_attempt(world: World) -> None:
    paths = [f"crash{i}" for i in range(20)]
    for path in paths:  # the first answer puts each retry 5 s out: all wait on tiers at the kill
        world.receiver.plans[path] = [(503, {"Retry-After": "5"}), (503, {}), (503, {}), (200, {})]
    records = [notification(world, path) for path in paths]
    await send(world, *records)
    await until(lambda: all(world.attempts(r.deliveryId) for r in records))
    world.kill(signal.SIGKILL)
    pending = sum(len(world.receiver.hits[p]) == 1 for p in paths)
    world.start()
    delivered = [(r.deliveryId, 4, "delivered") for r in records]
    await until(lambda: sorted(ended(world, records, "delivered")) == sorted(delivered), 60)
    await asyncio.sleep(DELAYS[-1] + SLACK)
    assert pending == len(paths), "the kill came too late to leave every retry pending"
    for record, path in zip(records, paths, strict=True):
        assert len(world.receiver.hits[path]) == 4, path  # none lost, none twice
        numbers = [a.attempt for a in world.attempts(record.deliveryId)]
        assert numbers == [1, 2, 3, 4], (path, numbers)
        assert gaps(world.receiver.hits[path])[0] >= 5.0  # the Retry-After outlived the kill


async def test_kill_9_with_attempts_in_flight_makes_no_attempt_twice(world: World) -> None:
    paths = [f"inflight{i}" for i in range(4)]  # one lane (one origin) of 4 in flight
    for path in paths:  # the first request is held until after the kill, then 503; then 200
        world.receiver.plans[path] = [(503, {}), (200, {})]
        world.receiver.holds[path] = 5.0
    records = [notification(world, path) for path in paths]
    await send(world, *records)
    await until(lambda: all(world.receiver.hits[p] for p in paths))
    await until(lambda: {(r.deliveryId, 1) for r in records} <= starts_of(world))
    assert not any(world.attempts(r.deliveryId) for r in records)  # all still in flight
    world.kill(signal.SIGKILL)
    world.start()
    await until(lambda: len(ended(world, records, "delivered")) == len(records), 60)
    await asyncio.sleep(DELAYS[-1] + SLACK)
    for record, path in zip(records, paths, strict=True):
        # Attempt 1 reached the receiver before the kill: it counts as made and is not repeated.
        assert len(world.receiver.hits[path]) == 2, path
        attempts = world.attempts(record.deliveryId)
        assert [(a.attempt, a.outcome) for a in attempts] == [(1, "retrying"), (2, "delivered")]
        assert attempts[0].error is not None and "stopped during this attempt" in attempts[0].error


def starts_of(world: World) -> set[tuple[str, int]]:
    return {(d, a) for s in world.starts for d, _, a in s.attempts}


def ended(
    world: World, records: list[NotificationRecord], outcome: str
) -> list[tuple[str, int, str]]:
    """(delivery id, attempt, outcome) of the records' attempts that ended in `outcome`."""
    return [
        (a.deliveryId, a.attempt, a.outcome)
        for r in records
        for a in world.attempts(r.deliveryId)
        if a.outcome == outcome
    ]


async def test_a_poison_record_goes_to_the_dlq_and_the_partition_goes_on(world: World) -> None:
    poison = b"\xff\xfe not a notification"
    for partition in range(PARTITIONS):
        await world.producer.send_and_wait(topics.NOTIFICATIONS, poison, partition=partition)
    record = notification(world, "after-poison")
    await send(world, record)
    await until(lambda: [a.outcome for a in world.attempts(record.deliveryId)] == ["delivered"])
    consumer = AIOKafkaConsumer(
        bootstrap_servers=world.bootstrap, enable_auto_commit=False, metadata_max_age_ms=1000
    )
    await consumer.start()
    tps = [TopicPartition(topics.DELIVERIES_DLQ, p) for p in range(PARTITIONS)]
    consumer.assign(tps)
    for tp in tps:
        consumer.seek(tp, 0)
    dead: list[bytes] = []
    deadline = time.monotonic() + 10
    while len(dead) < PARTITIONS and time.monotonic() < deadline:
        batch = await consumer.getmany(timeout_ms=200)
        dead += [r.value or b"" for records in batch.values() for r in records]
    await consumer.stop()
    assert dead == [poison] * PARTITIONS


async def test_the_worker_serves_its_metrics(world: World) -> None:
    record = notification(world, "metered")
    await send(world, record)
    await until(lambda: [a.outcome for a in world.attempts(record.deliveryId)] == ["delivered"])
    url = f"http://127.0.0.1:{world.env['CC_METRICS_PORT']}/metrics"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        text = await response.text()
    (line,) = [
        line for line in text.splitlines()
        if line.startswith('cc_dispatcher_attempts_total{channel="webhook",outcome="delivered"}')
    ]  # fmt: skip
    assert float(line.split()[-1]) >= 1


async def test_a_full_lane_defers_its_records_and_the_others_go_on(world: World) -> None:
    slow_hits: list[str] = []

    async def slow(request: web.Request) -> web.Response:
        slow_hits.append(request.headers["sim-delivery-id"])
        await asyncio.sleep(1.5)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/{tail:.*}", slow)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        slow_records = [
            msgspec.structs.replace(
                notification(world, f"slow{i}"),
                destination=WebhookDestination(url=f"http://127.0.0.1:{port}/s"),
            )
            for i in range(12)
        ]
        await send(world, *slow_records)  # 4 in flight, 4 queued, 4 deferred to the first tier
        fast = [notification(world, f"fast{i}") for i in range(5)]
        await send(world, *fast)
        started = time.monotonic()
        await until(lambda: all(world.attempts(r.deliveryId) for r in fast), timeout_s=10)
        assert time.monotonic() - started < 1.4  # before the first slow answer
        await until(lambda: all(world.attempts(r.deliveryId) for r in slow_records), timeout_s=30)
        assert sorted(slow_hits) == sorted(r.deliveryId for r in slow_records)  # each once
        for record in slow_records:
            assert [(a.attempt, a.outcome) for a in world.attempts(record.deliveryId)] == [
                (1, "delivered")
            ]  # put off, not counted as an attempt
        url = f"http://127.0.0.1:{world.env['CC_METRICS_PORT']}/metrics"
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            text = await response.text()
        (line,) = [
            line for line in text.splitlines() if line.startswith("cc_dispatcher_deferred_total")
        ]
        assert float(line.split()[-1]) >= 4
    finally:
        await runner.cleanup()


async def _metric(world: World, name: str) -> float:
    url = f"http://127.0.0.1:{world.env['CC_METRICS_PORT']}/metrics"
    deadline = time.monotonic() + 20
    while True:  # the worker serves its metrics a moment after it starts
        try:
            async with aiohttp.ClientSession() as session, session.get(url) as response:
                text = await response.text()
            break
        except aiohttp.ClientConnectionError:
            assert time.monotonic() < deadline, "no metrics"
            await asyncio.sleep(0.1)
    values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " ")]
    return values[0] if values else 0.0


async def _dead_letters(world: World, topic: str, marker: bytes, count: int) -> list[Any]:
    return await matching_records(
        world.bootstrap, topic, PARTITIONS, lambda r: marker in (r.value or b""), count
    )


async def test_records_that_raise_anywhere_are_dead_lettered_with_the_error(world: World) -> None:
    marker = f"poison-{next(_counter)}"

    def poison() -> list[bytes]:  # distinct deliveries: a copy of one would be skipped as such
        deep = msgspec.json.encode(notification(world, marker)).replace(
            b'"payload":{', b'"payload":{"deep":' + b"[" * 5000 + b"]" * 5000 + b","
        )
        no_lane = msgspec.structs.replace(
            notification(world, marker), destination=WebhookDestination(url=f"http://[::1/{marker}")
        )
        bad_port = msgspec.structs.replace(
            notification(world, marker),
            destination=WebhookDestination(url=f"http://127.0.0.1:99999/{marker}"),
        )
        return [deep, msgspec.json.encode(no_lane), msgspec.json.encode(bad_port)]

    tier_poison = f"not a notification {marker}".encode()
    before = await _metric(world, "cc_dispatcher_dead_letters_total")
    before_tier = await _metric(world, "cc_dispatcher_retry_dead_letters_total")
    produced: list[bytes] = []
    for partition in range(PARTITIONS):
        for value in poison():
            produced.append(value)
            await world.producer.send_and_wait(topics.NOTIFICATIONS, value, partition=partition)
        await world.producer.send_and_wait(topics.retry_tier(1), tier_poison, partition=partition)
    record = notification(world, "after-poison-2")
    await send(world, record)
    await until(lambda: [a.outcome for a in world.attempts(record.deliveryId)] == ["delivered"])
    dead = await _dead_letters(world, topics.DELIVERIES_DLQ, marker.encode(), len(produced))
    assert sorted(r.value for r in dead) == sorted(produced)
    errors = [dict(r.headers)["error"].decode().partition(":")[0] for r in dead]
    assert sorted(errors) == ["RecursionError"] * PARTITIONS + ["ValueError"] * 2 * PARTITIONS
    assert all(dict(r.headers)["source"].startswith(b"notifications/") for r in dead)
    tier_dead = await _dead_letters(world, topics.RETRY_TIERS_DLQ, marker.encode(), PARTITIONS)
    assert [r.value for r in tier_dead] == [tier_poison] * PARTITIONS
    assert all(dict(r.headers)["source"].startswith(b"deliveries.retry.1/") for r in tier_dead)
    assert await _metric(world, "cc_dispatcher_dead_letters_total") - before == len(produced)
    tier_count = await _metric(world, "cc_dispatcher_retry_dead_letters_total") - before_tier
    assert tier_count == PARTITIONS
