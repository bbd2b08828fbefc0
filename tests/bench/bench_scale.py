"""Benchmark: throughput against the number of members, for the alert engine and the dispatcher
(consumer-group members) and for API replicas sharing PostgreSQL and Redis.

Alert engine: for 1, 2 and 4 `codecourier alerts` processes in one group (a broker of their own
each time, 1,000 subscriptions over 10,000 workflows as in bench_alerts), the members first
settle (each logged its share of the partitions) and work a warm-up off; then sentinels, the
load (one event per record) and sentinels again are produced at once, and the rate runs from
the first start sentinel's notification to the last end sentinel's.

Dispatcher: for 1, 2 and 4 `codecourier dispatcher` processes in one group (a broker of their
own each time), once they have settled, N webhook notifications are produced at once to a fast
local receiver (its own process, as in bench_dispatch); the rate runs from the first to the last
attempt on `delivery-log`.

API: four `codecourier api` replicas share one PostgreSQL database (SQLite when PostgreSQL is
unreachable, said in the output), one Redis (rate limits) and one broker; a closed-loop client
sends authenticated requests to the first 1, 2 and 4 of them in turn (round robin):
`GET /api/v1/whoami`, and `POST /api/v1/events` with one event per request.

Each figure comes with its rate per member, its speedup against one member, measured in the
same run, and the members' CPU time per unit of work (which sizes a machine better than a rate
measured on a shared one); `cpus` is the machine's core count: members beyond it share cores
and cannot add throughput. Prints one JSON object. Sizes: BENCH_SCALE_MEMBERS (1,2,4), BENCH_SCALE_ALERT_EVENTS,
BENCH_SCALE_DELIVERIES, BENCH_SCALE_SECONDS, BENCH_SCALE_CONCURRENCY.
"""

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from aiokafka import AIOKafkaProducer
from redis import Redis

from schemas import topics
from services.common.broker import EmbeddedBroker
from services.common.kafka import ensure_topics
from services.common.log import configure_logging
from services.common.processes import free_port
from tests.bench import bench_alerts as alerts
from tests.bench import bench_dispatch as dispatch
from tests.bench.load import cpu_seconds as process_cpu_seconds
from tests.bench.load import run_load
from tests.conftest import PG_DSN, REDIS_URL
from tests.factories import iso
from tests.integration.test_alerts_app import sub
from tests.members import Group
from tests.processes import CLI, ROOT, service_env, start_service
from tests.scaling import wait_healthy

MEMBERS = tuple(int(n) for n in os.environ.get("BENCH_SCALE_MEMBERS", "1,2,4").split(","))
ALERT_EVENTS = int(os.environ.get("BENCH_SCALE_ALERT_EVENTS", "16000"))
ALERT_WARMUP = 4000
DELIVERIES = int(os.environ.get("BENCH_SCALE_DELIVERIES", "12000"))
SECONDS = float(os.environ.get("BENCH_SCALE_SECONDS", "5"))
CONCURRENCY = int(os.environ.get("BENCH_SCALE_CONCURRENCY", "32"))
PARTITIONS = alerts.PARTITIONS  # 8 unless BENCH_PARTITIONS: up to 8 members get a share
SECRET = "bench-scale-secret-key-0123456789-abcdef"
ADMIN = "cc_admin_bench_scale_0123456789abcdef"
LIMITLESS = json.dumps(
    {"enterprise": {"apiPerMinute": 10**9, "apiBurst": 10**9, "asyncPerMinute": 10**9,
                    "asyncBurst": 10**9, "syncPerMinute": 10**9, "syncBurst": 10**9}}
)  # fmt: skip
SETTLE_S = 180


def progress(message: str) -> None:
    print(f"bench_scale: {message}", file=sys.stderr, flush=True)


def cpu_seconds(pids: list[int]) -> float:
    return sum(map(process_cpu_seconds, pids))


def pids(group: Group) -> list[int]:
    return [m.process.pid for m in group.members if m.process is not None]


async def settled(group: Group, topic: str, timeout_s: float = SETTLE_S) -> None:
    """Wait until the group's members have split `topic` among themselves (from their logs)."""
    deadline = time.monotonic() + timeout_s
    while not group.settled(topic, PARTITIONS):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{group.service} members did not settle in {timeout_s} s")
        if len(group.live()) < len(group.members):
            raise RuntimeError(f"a {group.service} member exited; see {group.work}")
        await asyncio.sleep(0.1)


def scaled(rates: dict[int, dict[str, Any]], field: str) -> dict[str, dict[str, Any]]:
    """Each member count's figures, with the rate per member and the speedup against one."""
    first = min(rates)
    base = rates[first][field] / first  # one member's rate (estimated if 1 was not measured)
    return {
        str(n): {
            **figures,
            "members": n,
            f"{field}_per_member": round(figures[field] / n, 1),
            "speedup_vs_1": round(figures[field] / base, 2) if base else None,
        }
        for n, figures in rates.items()
    }


# ---- the alert engine ---------------------------------------------------------------------


async def alert_rate(work: Path, members: int, warmup: alerts.Pairs, load: alerts.Pairs) -> dict:
    stack = await alerts.Stack.start(work, f"alerts-{members}")
    group = Group("alerts", stack.broker.bootstrap, work / f"alerts-{members}", {
        "CC_KAFKA_PARTITIONS": str(PARTITIONS), "CC_ALERTS_GROUP": f"bench-scale-{members}",
        "CC_TICK_SECONDS": "15",
    })  # fmt: skip
    group.work.mkdir()
    try:
        created = int(time.time() * 1000) - 3_600_000
        plain = sub("ntf_sentinel", alerts.SENTINEL, createdAtMs=created)
        await stack.publish([plain, *alerts.subscriptions(created)])
        await stack.produce(topics.EXECUTIONS, warmup)
        group.start(members)
        await settled(group, topics.EXECUTIONS)
        await alerts.caught_up(stack, "warm")
        cpu = cpu_seconds(pids(group))
        for pairs in (alerts.sentinels("start"), load, alerts.sentinels("end")):
            await stack.produce(topics.EXECUTIONS, pairs)
        await sentinels_seen(stack, "end-")
        first = min(t for t, _ in stack.notes.of_project(alerts.SENTINEL, "start-"))
        last = max(t for t, _ in stack.notes.of_project(alerts.SENTINEL, "end-"))
        assert len(group.live()) == members, "a member exited during the run"
        used = cpu_seconds(pids(group)) - cpu
        return {
            "seconds": round(last - first, 2),
            "events_per_s": round(len(load) / (last - first)),
            "members_cpu_s": round(used, 1),
            "cpu_ms_per_event": round(used * 1000 / len(load), 3),
        }
    finally:
        group.stop()
        await stack.stop()


async def sentinels_seen(stack: alerts.Stack, prefix: str, timeout_s: float = 900) -> None:
    """Wait for the notification of the sentinel of every partition."""
    deadline = time.monotonic() + timeout_s
    while len(stack.notes.of_project(alerts.SENTINEL, prefix)) < PARTITIONS:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the {prefix} sentinels were not all handled in {timeout_s} s")
        await asyncio.sleep(0.05)


async def alert_engine(work: Path) -> dict[str, Any]:
    warmup = alerts.load_records(ALERT_WARMUP, seed=1)
    load = alerts.load_records(ALERT_EVENTS)
    rates = {}
    for n in MEMBERS:
        progress(f"alert engine: {n} member(s), {ALERT_EVENTS} events")
        rates[n] = await alert_rate(work, n, warmup, load)
        progress(f"alert engine: {n} member(s): {rates[n]}")
    return {
        "events": ALERT_EVENTS,
        "events_per_record": 1,
        "subscriptions": alerts.PROJECTS * alerts.SUBS_PER_PROJECT,
        "workflows": alerts.PROJECTS * alerts.WORKFLOWS_PER_PROJECT,
        "by_members": scaled(rates, "events_per_s"),
    }


# ---- the dispatcher -------------------------------------------------------------------------


async def delivery_rate(work: Path, members: int, url: str) -> dict[str, Any]:
    broker = EmbeddedBroker(0, work / f"dispatch-{members}-broker.log")
    bootstrap = await broker.start()
    await ensure_topics(bootstrap, PARTITIONS)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                                max_batch_size=1024 * 1024)  # fmt: skip
    await producer.start()
    log = dispatch.Log(bootstrap)
    await log.start()
    settings = {
        "CC_KAFKA_PARTITIONS": str(PARTITIONS), "CC_SECRET_KEY": SECRET,
        "CC_DATABASE_URL": f"sqlite+aiosqlite:///{work / f'dispatch-{members}.db'}",
        "CC_EGRESS_ALLOW_CIDRS": "127.0.0.0/8", "CC_DISPATCHER_GROUP": f"bench-scale-{members}",
    }  # fmt: skip
    group = Group("dispatcher", bootstrap, work / f"dispatch-{members}", settings)
    group.work.mkdir()
    try:
        env = service_env(group.work / "migrate", bootstrap=bootstrap, settings=settings)
        await asyncio.to_thread(
            subprocess.run, [CLI, "migrate"], env=env, cwd=ROOT, check=True, capture_output=True
        )
        group.start(members)
        await settled(group, topics.NOTIFICATIONS)
        cpu = cpu_seconds(pids(group))
        attempts, seconds = await dispatch.deliver_at_once(
            producer, log, url, f"m{members}", DELIVERIES
        )
        assert len(group.live()) == members, "a member exited during the run"
        used = cpu_seconds(pids(group)) - cpu
        return {
            "seconds": round(seconds, 2),
            "deliveries_per_s": round(DELIVERIES / seconds),
            "delivered": sum(a.outcome == "delivered" for a in attempts),
            "members_cpu_s": round(used, 1),
            "cpu_ms_per_delivery": round(used * 1000 / DELIVERIES, 3),
        }
    finally:
        group.stop()
        await log.stop()
        await producer.stop()
        broker.stop()


@contextmanager
def receiver_process(work: Path) -> Iterator[str]:
    """bench_dispatch's fast webhook receiver, in a process of its own: its URL."""
    port = free_port()
    script = work / "receiver.py"
    script.write_text(dispatch.RECEIVER)
    process = subprocess.Popen([sys.executable, str(script), str(port)])
    try:
        yield f"http://127.0.0.1:{port}/hook"
    finally:
        process.terminate()
        process.wait(10)


async def dispatcher(work: Path) -> dict[str, Any]:
    rates = {}
    with receiver_process(work) as url:
        async with aiohttp.ClientSession() as session:  # the receiver is up before we go on
            await _until_answers(session, url)
        for n in MEMBERS:
            progress(f"dispatcher: {n} member(s), {DELIVERIES} deliveries")
            rates[n] = await delivery_rate(work, n, url)
            progress(f"dispatcher: {n} member(s): {rates[n]}")
    return {"deliveries": DELIVERIES, "by_members": scaled(rates, "deliveries_per_s")}


async def _until_answers(session: aiohttp.ClientSession, url: str) -> None:
    for _ in range(200):
        try:
            async with session.post(url, data=b"{}") as response:
                await response.read()
                return
        except aiohttp.ClientError:
            await asyncio.sleep(0.05)
    raise TimeoutError(url)


# ---- API replicas ---------------------------------------------------------------------------


@asynccontextmanager
async def control_plane_url(work: Path) -> Any:
    """A fresh PostgreSQL database the replicas share, or a shared SQLite file without one."""
    name = f"cc_bench_scale_{os.getpid()}"
    try:
        admin = await asyncio.wait_for(asyncpg.connect(PG_DSN), 5)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        progress(f"PostgreSQL unreachable ({exc!r}): the replicas share a SQLite file")
        yield f"sqlite+aiosqlite:///{work / 'api-control.db'}", "sqlite"
        return
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_DSN.rsplit("/", 1)[0] + f"/{name}", "postgresql"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def redis_url() -> str:
    """The benchmark's Redis database, emptied (CC_TEST_REDIS, as the tests use)."""
    client = Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    client.flushdb()
    client.close()
    return REDIS_URL


async def api_replicas(work: Path) -> dict[str, Any]:
    broker = EmbeddedBroker(0, work / "api-broker.log")
    bootstrap = await broker.start()
    processes: list[subprocess.Popen[bytes]] = []
    try:
        async with (
            control_plane_url(work) as (database_url, database),
            aiohttp.ClientSession() as session,
        ):
            settings = {
                "CC_KAFKA_PARTITIONS": str(PARTITIONS), "CC_SECRET_KEY": SECRET,
                "CC_ADMIN_TOKEN": ADMIN, "CC_DATABASE_URL": database_url,
                "CC_REDIS_URL": redis_url(), "CC_PLANS": LIMITLESS,
            }  # fmt: skip
            urls = []
            for n in range(max(MEMBERS)):
                port = free_port()
                data = work / f"api-{n}"
                # Each its own data directory, so its own chDB: one process per directory.
                env = service_env(data, bootstrap=bootstrap, http_port=port, settings=settings)
                processes.append(start_service([CLI, "api"], env, work / f"api-{n}.log"))
                urls.append(f"http://127.0.0.1:{port}")
                # One at a time: the first one migrates the shared control plane.
                await wait_healthy(session, urls[-1], processes[-1], timeout_s=120)
            key = await _project_key(session, urls[0])
            result = await _replica_rates(urls, [p.pid for p in processes], key)
            return {"control_plane": database, "rate_limits": "redis", **result}
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            process.wait(30)
        broker.stop()


async def _project_key(session: aiohttp.ClientSession, url: str) -> str:
    headers = {"Authorization": f"Bearer {ADMIN}"}
    body = {"name": "bench-scale", "plan": "enterprise"}
    async with session.post(f"{url}/admin/v1/projects", json=body, headers=headers) as response:
        assert response.status == 201, await response.text()
        return str((await response.json())["data"]["key"]["secret"])


def _event_body() -> bytes:
    """One completed execution per request, as most runtimes report."""
    ended = iso(datetime.now(UTC))
    event = {
        "type": "workflow.execution.completed", "executionId": f"ex-{secrets.token_hex(6)}",
        "workflowId": "wf-bench", "trigger": "api", "level": "info",
        "startedAt": ended, "endedAt": ended,
    }  # fmt: skip
    return json.dumps({"events": [event]}).encode()


async def _replica_rates(urls: list[str], replicas: list[int], key: str) -> dict[str, Any]:
    auth = {"Authorization": f"Bearer {key}"}
    post = auth | {"Content-Type": "application/json"}
    routes: dict[str, Callable[[list[str]], Awaitable[dict[str, float]]]] = {
        "whoami": lambda targets: run_load(
            [f"{u}/api/v1/whoami" for u in targets], auth, CONCURRENCY, SECONDS
        ),
        "events_one_per_request": lambda targets: run_load(
            [f"{u}/api/v1/events" for u in targets], post, CONCURRENCY, SECONDS,
            method="POST", body=_event_body(), expected_status=202,
        ),
    }  # fmt: skip
    for route in routes.values():  # warm-up: connections, key caches, JIT-free but cold paths
        await route(urls)
    out: dict[str, Any] = {}
    for name, route in routes.items():
        rates = {}
        for n in MEMBERS:
            progress(f"api: {name} over {n} replica(s)")
            cpu = cpu_seconds(replicas[:n])
            rates[n] = await route(urls[:n])
            used = cpu_seconds(replicas[:n]) - cpu
            rates[n]["cpu_ms_per_request"] = round(used * 1000 / max(1, rates[n]["requests"]), 3)
        out[name] = {"by_members": scaled(rates, "rps")}
    return out


async def main() -> dict[str, Any]:
    configure_logging("warning")
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="cc-bench-scale-") as tmp:
        work = Path(tmp)
        result = {
            "benchmark": "scale",
            "cpus": os.cpu_count(),
            "members": list(MEMBERS),
            "partitions": PARTITIONS,
            "alerts": await alert_engine(work),
            "dispatcher": await dispatcher(work),
            "api": await api_replicas(work),
        }
    result["notes"] = (
        f"{os.cpu_count()} cores: every member, the broker, the receiver and this client share "
        "them, so more members than cores cannot add throughput; per-member figures size a "
        "deployment where each member has a core of its own"
    )
    result["targets"] = {"speedup": "close to min(members, cores) per member count"}
    result["wall_s"] = round(time.time() - started, 1)
    return result


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main()), indent=2))
