"""Benchmark: dispatcher throughput against a bare client loop, and isolation from a hung receiver.

Throughput, in ROUNDS alternating rounds (this machine's noise hits both sides): a bare aiohttp
client POSTs N requests to a fast local receiver (its own process) with the concurrency one
dispatcher lane allows (16 in flight); then N webhook notifications with the same body go to
`notifications` at once, and one running `codecourier dispatcher` process delivers them to the
same receiver. The dispatcher's rate runs from the first to the end of the last attempt on
`delivery-log`. The ratio is the median of the rounds' ratios. After each dispatcher round, the
same records are read again by `consume_and_post`, the least a Kafka-fed dispatcher does
(consume, decode, POST, record an attempt, commit), in this process like the bare loop: its
rate over the bare loop's is the floor's share (`consume_and_post_floor.over_bare`), and the
dispatcher's over it what the dispatcher's own work leaves (`ratio_vs_floor`). Each round also
reports the broker's CPU per delivery; the embedded broker's fetches cost more as its topics fill
(see bench_broker), so nothing reads `delivery-log` while a round runs: the receiver counts the
round's POSTs, and the benchmark reads the log once they are in.

Isolation: a steady load spread over 50 receiver origins (127.0.0.1..50 on one port), first with
all of them answering, then with one that never answers (each of its attempts ends at the
delivery timeout, then waits on the retry tiers). p99 delivery latency (produce -> attempt
end) of the 49 healthy origins with the hung one vs without: target within 2x.
"""

import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import TopicPartition

from schemas import topics
from schemas.deliveries import DeliveryAttempt, LogEntry
from schemas.destinations import WebhookDestination
from schemas.notifications import NotificationRecord
from services.common.broker import EmbeddedBroker
from services.common.kafka import end_offsets, ensure_topics
from services.common.log import configure_logging
from services.common.processes import free_port
from services.dispatcher.channels.webhook import canonical_body
from tests.bench.load import cpu_seconds, median_of, percentile
from tests.processes import CLI, ROOT, service_env, start_service

N = int(os.environ.get("BENCH_DELIVERIES", "20000"))  # per round
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))  # the bare loop and the dispatcher alternate
WARM = 200
PARTITIONS = 8
IN_FLIGHT = 16
ISOLATION_RATE = int(os.environ.get("BENCH_ISOLATION_RATE", "250"))  # notifications/s
ISOLATION_S = float(os.environ.get("BENCH_ISOLATION_SECONDS", "20"))
TIMEOUT_S = 10  # delivery timeout during the benchmark (the default is 30 s)
HUNG_HOST = "127.0.0.50"
FLOOR_TOPIC = "bench.floor-attempts"
TARGET_RATIO = 0.6  # issue 13: deliveries/s over the bare client loop's POSTs/s, same run

RECEIVER = """
import asyncio, collections, sys
from aiohttp import web
counts = collections.Counter()
async def handle(request):
    await request.read()
    counts[request.path] += 1
    if request.host.startswith("127.0.0.50"):
        await asyncio.sleep(3600)
    return web.Response(text="ok")
async def count(request):
    return web.Response(text=str(counts["/hook/" + request.match_info["tail"]]))
app = web.Application()
app.router.add_post("/{tail:.*}", handle)
app.router.add_get("/count/{tail:.*}", count)
web.run_app(app, host="0.0.0.0", port=int(sys.argv[1]), access_log=None, print=None)
"""


def progress(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


def payload(n: int) -> dict[str, Any]:
    return {
        "id": f"evt_bench_{n}", "type": "workflow.execution.completed",
        "timestamp": 1_790_000_000_000,
        "data": {"workflowId": f"wf-{n % 100}", "workflowName": "Nightly ETL",
                 "executionId": f"ex-{n}", "status": "success", "level": "info",
                 "trigger": "api", "startedAt": "2026-11-24T01:00:00.000Z",
                 "endedAt": "2026-11-24T01:00:01.234Z", "totalDurationMs": 1234,
                 "cost": {"total": 0.0123, "input": 0.01, "output": 0.0023}, "files": None},
        "links": {"log": f"/v1/logs/log_{n}", "execution": f"/v1/logs/executions/ex-{n}"},
    }  # fmt: skip


def record(n: int, url: str, prefix: str) -> NotificationRecord:
    body = payload(n)
    return NotificationRecord(
        v=1, deliveryId=f"dlv_{prefix}_{n}", eventId=body["id"], subscriptionId=f"ntf_{n % 50}",
        projectId="prj_bench", notificationType="webhook", destination=WebhookDestination(url=url),
        payload=body, createdAtMs=int(time.time() * 1000),
    )  # fmt: skip


class Log:
    """Reads `delivery-log` from the start when asked (`catch_up`), keeping every attempt by the
    prefix of its delivery id. It reads nothing while a round runs: decoding every attempt as
    it came cost this process, on the dispatcher's two cores, CPU the bare loop and the floor
    never had to share."""

    def __init__(self, bootstrap: str) -> None:
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        self.tps = [TopicPartition(topics.DELIVERY_LOG, p) for p in range(PARTITIONS)]
        self.attempts: dict[str, list[DeliveryAttempt]] = {}
        self.decoder = msgspec.json.Decoder(LogEntry)

    async def start(self) -> None:
        await self.consumer.start()
        self.consumer.assign(self.tps)
        await self.consumer.seek_to_beginning()

    async def stop(self) -> None:
        await self.consumer.stop()

    async def catch_up(self) -> None:
        """Read what is on the log now."""
        ends = await self.consumer.end_offsets(self.tps)
        while any([await self.consumer.position(tp) < end for tp, end in ends.items()]):
            batch = await self.consumer.getmany(timeout_ms=100, max_records=10_000)
            for records in batch.values():
                for entry in (self.decoder.decode(r.value or b"") for r in records):
                    if isinstance(entry, DeliveryAttempt):
                        prefix = entry.deliveryId.removeprefix("dlv_").rpartition("_")[0]
                        self.attempts.setdefault(prefix, []).append(entry)

    def of(self, prefix: str) -> list[DeliveryAttempt]:
        return self.attempts.get(prefix, [])


async def produce(producer: AIOKafkaProducer, records: list[NotificationRecord]) -> None:
    futures = [
        await producer.send(topics.NOTIFICATIONS, msgspec.json.encode(r), key=r.subscriptionId.encode())
        for r in records
    ]  # fmt: skip
    await asyncio.gather(*futures)


async def wait_for(log: Log, prefix: str, count: int, timeout_s: float) -> list[DeliveryAttempt]:
    deadline = time.monotonic() + timeout_s
    while True:
        await log.catch_up()
        if len(found := log.of(prefix)) >= count:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(found)} of {count} {prefix} attempts after {timeout_s} s")
        await asyncio.sleep(0.1)


async def received(url: str, count: int, timeout_s: float) -> None:
    """Wait until the receiver has had `count` POSTs to `url`'s path (it counts them)."""
    counted = url.replace("/hook/", "/count/")
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while True:
            async with session.get(counted) as response:
                if int(await response.text()) >= count:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"fewer than {count} POSTs to {url} after {timeout_s} s")
            await asyncio.sleep(0.05)


async def receiving(url: str, timeout_s: float = 60) -> None:
    """Wait until the receiver answers (a loaded machine starts it slowly)."""
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.post(url, data=b"{}") as response:
                    await response.read()
                    return
            except aiohttp.ClientConnectionError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)


async def bare_loop(url: str, count: int) -> dict[str, float]:
    """The same POSTs from a plain aiohttp client with the lane's concurrency."""
    bodies = [canonical_body(payload(n)) for n in range(count)]
    headers = {"Content-Type": "application/json"}
    queue = iter(bodies)
    async with aiohttp.ClientSession() as session:

        async def worker() -> None:
            for body in queue:
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()

        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return rate(count, seconds, cpu)


def rate(count: int, seconds: float, cpu_s: float) -> dict[str, float]:
    """A loop of this process: requests per second and this process's CPU per request."""
    return {
        "requests": count,
        "seconds": round(seconds, 2),
        "per_s": round(count / seconds),
        "cpu_us_per_request": round(cpu_s * 1e6 / count),
    }


async def consume_and_post(
    bootstrap: str, url: str, starts: dict[TopicPartition, int], count: int
) -> dict[str, float]:
    """The floor of a Kafka-fed dispatcher: read `count` notification records from `starts`,
    decode each, POST its body (the lane's concurrency), record one attempt per answer on a topic
    of its own, and commit a fetched batch's offsets once its attempts are acknowledged. No
    journal read back, lanes, retries, signatures or egress checks: what is left when they cost
    nothing, measured in this process like the bare loop."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id="bench-floor", enable_auto_commit=False
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await consumer.start()
    await producer.start()
    consumer.assign(list(starts))
    for tp, offset in starts.items():
        consumer.seek(tp, offset)
    decoder = msgspec.json.Decoder(NotificationRecord)
    headers = {"Content-Type": "application/json"}
    queue: asyncio.Queue[tuple[bytes, asyncio.Future[None]]] = asyncio.Queue(IN_FLIGHT * 4)
    commits: list[asyncio.Task[None]] = []

    async def commit_when_done(done: list[asyncio.Future[None]], offsets: dict[Any, int]) -> None:
        await asyncio.gather(*done)
        await consumer.commit(offsets)

    try:
        async with aiohttp.ClientSession() as session:

            async def worker() -> None:
                while True:
                    value, done = await queue.get()
                    notification = decoder.decode(value)
                    body = canonical_body(notification.payload)
                    started = time.time()
                    async with session.post(url, data=body, headers=headers) as response:
                        await response.read()
                    attempt = {
                        "deliveryId": notification.deliveryId,
                        "attempt": 1,
                        "status": response.status,
                        "attemptedAtMs": int(started * 1000),
                    }
                    sent = await producer.send(FLOOR_TOPIC, msgspec.json.encode(attempt))
                    sent.add_done_callback(lambda _f, d=done: d.set_result(None))

            workers = [asyncio.create_task(worker()) for _ in range(IN_FLIGHT)]
            read, started, cpu = 0, 0.0, 0.0
            while read < count:
                batch = await consumer.getmany(timeout_ms=100, max_records=count - read)
                if batch and not started:
                    started, cpu = time.perf_counter(), time.process_time()
                for tp, records in batch.items():
                    done = []
                    for r in records:
                        done.append(asyncio.get_running_loop().create_future())
                        await queue.put((r.value or b"", done[-1]))
                    offsets = {tp: records[-1].offset + 1}
                    commits.append(asyncio.create_task(commit_when_done(done, offsets)))
                    read += len(records)
            await asyncio.gather(*commits)
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
            for task in workers:
                task.cancel()
    finally:
        await producer.stop()
        await consumer.stop()
    return rate(count, seconds, cpu)


def median_ratio(tops: list[dict[str, Any]], bottoms: list[dict[str, float]]) -> float:
    """The median over the rounds of one side's rate over the other's, in the same round."""
    pairs = zip(tops, bottoms, strict=True)
    return round(statistics.median(top["per_s"] / bottom["per_s"] for top, bottom in pairs), 3)


CREATED: dict[str, int] = {}


async def deliver_at_once(
    producer: AIOKafkaProducer, log: Log, url: str, prefix: str, count: int
) -> tuple[list[DeliveryAttempt], float]:
    """`count` notifications to `url` (under a path of their own, which the receiver counts)
    produced at once: their attempts, and the seconds from the first attempt to the end of the
    last."""
    url = f"{url}/{prefix}"
    await produce(producer, [record(n, url, prefix) for n in range(count)])
    await received(url, count, 600)
    attempts = await wait_for(log, prefix, count, 600)  # their ends follow the answers
    first = min(a.attemptedAtMs for a in attempts)
    last = max(a.attemptedAtMs + a.durationMs for a in attempts)
    return attempts, (last - first) / 1000


async def through_dispatcher(
    producer: AIOKafkaProducer, log: Log, url: str, pid: int, broker_pid: int, prefix: str
) -> dict[str, Any]:
    """N notifications produced at once to the running dispatcher: deliveries per second from
    the first attempt to the end of the last, and the CPU per delivery meanwhile of the
    dispatcher and of the broker (which also takes the benchmark's own produce and reads)."""
    cpu_before, broker_before = cpu_seconds(pid), cpu_seconds(broker_pid)
    attempts, seconds = await deliver_at_once(producer, log, url, prefix, N)
    cpu_s = cpu_seconds(pid) - cpu_before
    broker_s = cpu_seconds(broker_pid) - broker_before
    return {
        "delivered": sum(a.outcome == "delivered" for a in attempts),
        "seconds": round(seconds, 2),
        "per_s": round(N / seconds),
        "dispatcher_cpu_us_per_delivery": round(cpu_s * 1e6 / N),
        "broker_cpu_us_per_delivery": round(broker_s * 1e6 / N),
    }


async def main() -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="cc-bench-dispatch-"))
    broker = EmbeddedBroker(0, work / "broker.log")
    bootstrap = await broker.start()
    await ensure_topics(bootstrap, PARTITIONS)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(FLOOR_TOPIC, PARTITIONS, 1)])
    finally:
        await admin.close()
    port = free_port()
    script = work / "receiver.py"
    script.write_text(RECEIVER)
    receiver = subprocess.Popen([sys.executable, str(script), str(port)])
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                                max_batch_size=1024 * 1024)  # fmt: skip
    await producer.start()
    log = Log(bootstrap)
    await log.start()
    dispatcher = None
    try:
        url = f"http://127.0.0.1:{port}/hook"
        await receiving(url)
        settings = {
            "CC_KAFKA_PARTITIONS": str(PARTITIONS),
            "CC_SECRET_KEY": "bench-secret-key-0123456789-0123456789",
            "CC_DATABASE_URL": f"sqlite+aiosqlite:///{work / 'control.db'}",
            "CC_EGRESS_ALLOW_CIDRS": "127.0.0.0/8",
            "CC_DELIVERY_TIMEOUT_SECONDS": str(TIMEOUT_S),
        }
        env = service_env(work / "data", bootstrap=bootstrap, settings=settings)
        await asyncio.to_thread(
            subprocess.run, [CLI, "migrate"], env=env, cwd=ROOT, check=True, capture_output=True
        )
        progress("starting the dispatcher")
        dispatcher = start_service([CLI, "dispatcher"], env, work / "dispatcher.log")
        await produce(producer, [record(n, url, "warm") for n in range(WARM)])
        await wait_for(log, "warm", WARM, 300)  # started, journal read, connections open
        assert broker.process is not None
        broker_pid = broker.process.pid
        rounds: list[dict[str, Any]] = []
        bare_rounds: list[dict[str, float]] = []
        floor_rounds: list[dict[str, float]] = []
        ratios: list[float] = []
        for round_ in range(ROUNDS):
            progress(f"round {round_ + 1} of {ROUNDS}: bare client loop, {N} POSTs")
            bare = await bare_loop(url, N)
            progress(f"round {round_ + 1} of {ROUNDS}: {N} notifications through the dispatcher")
            starts = await end_offsets(bootstrap, [topics.NOTIFICATIONS])
            delivered = await through_dispatcher(
                producer, log, url, dispatcher.pid, broker_pid, f"r{round_}"
            )
            progress(f"round {round_ + 1} of {ROUNDS}: the same records, consumed and POSTed")
            floor_rounds.append(await consume_and_post(bootstrap, url, starts, N))
            ratio = round(delivered["per_s"] / bare["per_s"], 3)
            progress(f"  {delivered['per_s']}/s vs bare {bare['per_s']}/s: {ratio} (target "
                     f"{TARGET_RATIO}), {delivered['dispatcher_cpu_us_per_delivery']} us of CPU "
                     "per delivery")  # fmt: skip
            rounds.append(delivered)
            bare_rounds.append(bare)
            ratios.append(ratio)
        throughput = {
            "deliveries": N,
            "delivered": sum(d["delivered"] for d in rounds),
            "per_s": median_of(rounds, "per_s"),
            "dispatcher_cpu_us_per_delivery": median_of(rounds, "dispatcher_cpu_us_per_delivery"),
            "rounds": rounds,
        }
        bare_loops = {
            "requests": N,
            "per_s": median_of(bare_rounds, "per_s"),
            "rounds": bare_rounds,
        }
        floor = {
            "requests": N,
            "per_s": median_of(floor_rounds, "per_s"),
            "over_bare": median_ratio(floor_rounds, bare_rounds),
            "rounds": floor_rounds,
        }
        phases = {}
        for name, hung in (("all_healthy", False), ("one_hung", True)):
            progress(f"isolation: {name} ({ISOLATION_RATE}/s for {ISOLATION_S:.0f} s)")
            phases[name] = await steady_phase(producer, log, port, name, hung)
        return {
            "benchmark": "dispatch",
            "rounds": ROUNDS,
            "throughput": throughput,
            "bare_client_loop": bare_loops,
            "ratio_vs_bare": median_ratio(rounds, bare_rounds),
            "ratios_by_round": ratios,
            "consume_and_post_floor": floor,
            "ratio_vs_floor": median_ratio(rounds, floor_rounds),
            "target_ratio_vs_bare": TARGET_RATIO,
            "isolation": phases,
            "p99_ratio_hung_vs_healthy": round(
                phases["one_hung"]["p99_ms"] / max(1.0, phases["all_healthy"]["p99_ms"]), 2
            ),
            "targets": {"per_s": 1500, "ratio_vs_bare": TARGET_RATIO, "p99_ratio": 2.0},
            "notes": f"one dispatcher process, {PARTITIONS} partitions, lane in flight "
            f"{IN_FLIGHT}, delivery timeout {TIMEOUT_S} s during the benchmark",
        }
    finally:
        if dispatcher is not None:
            dispatcher.send_signal(signal.SIGTERM)
            dispatcher.wait(30)
        receiver.terminate()
        await log.stop()
        await producer.stop()
        broker.stop()


async def steady_phase(
    producer: AIOKafkaProducer, log: Log, port: int, prefix: str, hung: bool
) -> dict[str, Any]:
    """A steady load over 50 origins; produce-to-attempt-end latency of the healthy ones."""
    hosts = [f"127.0.0.{i}" for i in range(1, 50)] + [HUNG_HOST if hung else "127.0.0.51"]
    sent = 0
    started = time.perf_counter()
    while (elapsed := time.perf_counter() - started) < ISOLATION_S:
        due = int(elapsed * ISOLATION_RATE)
        batch = [record(n, f"http://{hosts[n % 50]}:{port}/hook", prefix) for n in range(sent, due)]
        for r in batch:
            CREATED[r.deliveryId] = r.createdAtMs
        await produce(producer, batch)
        sent = due
        await asyncio.sleep(0.05)
    healthy = sum(1 for n in range(sent) if n % 50 != 49)
    deadline = time.monotonic() + 120
    while True:
        await log.catch_up()
        done = [
            a for a in log.of(prefix)
            if a.attempt == 1 and int(a.deliveryId.rsplit("_", 1)[1]) % 50 != 49
        ]  # fmt: skip
        if len(done) >= healthy or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    lat = sorted(a.attemptedAtMs + a.durationMs - CREATED[a.deliveryId] for a in done)
    return {
        "notifications": sent,
        "healthy_deliveries": len(done),
        "p50_ms": percentile(lat, 0.5),
        "p99_ms": percentile(lat, 0.99),
        "max_ms": lat[-1] if lat else None,
    }


if __name__ == "__main__":
    configure_logging("warning")
    print(json.dumps(asyncio.run(main()), indent=2))
