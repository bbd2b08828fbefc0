"""Scale-out: three alert engines and three dispatchers, each three in one consumer group, lose a
member to SIGKILL and gain one while 20,000 events flow. Every expected notification reaches its
receiver, no attempt is made twice, no alert is raised twice, and the rebalances are in the
members' structured logs.

The load is built so that the expected notifications are exactly known: every eighth event has
the trigger `schedule`, which two plain subscriptions per project filter on (one notification
per such execution and subscription), and three workflows of every batch fail three times in a
row and then recover, which a `consecutive_failures` rule per project turns into one fired and
one resolved notification with one alert id. Every other execution succeeds and is notified to
no one. Each project has a receiver of its own, and each subscription a path on it.
"""

import asyncio
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest

from schemas import topics
from schemas.deliveries import AttemptsStarted, DeliveryAttempt, LogEntry
from services.common.broker import EmbeddedBroker
from services.common.processes import free_port
from tests import external
from tests.e2e.helpers import new_project, post_events, subscribe
from tests.factories import completed
from tests.members import Group, Member
from tests.processes import CLI, Stack, service_env, start_service
from tests.receivers import HttpReceiver
from tests.scaling import committed_lag, read_topic, wait_healthy

PARTITIONS = 12
PROJECTS = 4
BATCHES = 40  # of 500 events: 20,000 events
WORKFLOWS_PER_BATCH, EVENTS_PER_WORKFLOW = 50, 10
RULE_WORKFLOWS_PER_BATCH = 3
FAILING = range(2, 6)  # the failed executions of a rule workflow: its third failure fires
SCHEDULED_EVERY = 8
PACE_S = 0.4  # between batches: the events flow while the groups change
# Batches sent before the kill, before the added members start, and before they hold partitions.
KILL_AFTER, ADD_AFTER, SETTLED_BEFORE = 12, 24, 32
DEADLINE_S = 240  # a failure bound for loaded machines; about a minute when all is well
PLAIN_PATHS = ("plain-a", "plain-b")
RULE_PATH = "rule"
ADMIN = "cc_admin_scale_out_0123456789abcdef"
RAISED = '{"enterprise": {"apiPerMinute": 100000000, "apiBurst": 100000000}}'
TIERS = (topics.NOTIFICATIONS, *(topics.retry_tier(n) for n in range(1, 6)))


def batch_events(batch: int, start: datetime) -> list[dict[str, Any]]:
    """The events of one batch: ten of each of its fifty workflows, in order."""
    events = []
    for w in range(WORKFLOWS_PER_BATCH):
        for j in range(EVENTS_PER_WORKFLOW):
            n = (batch * WORKFLOWS_PER_BATCH + w) * EVENTS_PER_WORKFLOW + j
            failed = w < RULE_WORKFLOWS_PER_BATCH and j in FAILING
            events.append(
                completed(
                    f"ex-{n}", f"wf-{batch}-{w}", ended=start + timedelta(milliseconds=n),
                    trigger="schedule" if n % SCHEDULED_EVERY == 0 else "api",
                    level="error" if failed else "info", status="error" if failed else "success",
                )
            )  # fmt: skip
    return events


def project_of(batch: int) -> int:
    return batch % PROJECTS


def expected(start: datetime) -> set[tuple[int, str, str, str]]:
    """(project, path, execution or workflow id, payload type) of every expected notification."""
    found = set()
    for batch in range(BATCHES):
        project = project_of(batch)
        for event in batch_events(batch, start):
            if event["trigger"] == "schedule":
                found |= {(project, path, event["executionId"], "workflow.execution.completed")
                          for path in PLAIN_PATHS}  # fmt: skip
        for w in range(RULE_WORKFLOWS_PER_BATCH):
            for kind in ("workflow.execution.completed", "workflow.alert.resolved"):
                found.add((project, RULE_PATH, f"wf-{batch}-{w}", kind))
    return found


@dataclass
class Seen:
    """A notification as a receiver got it."""

    project: int
    path: str
    delivery_id: str
    subject: str  # the execution id of a plain notification, the workflow id of an alert's
    type: str
    alert_id: str | None

    @property
    def key(self) -> tuple[int, str, str, str]:
        return self.project, self.path, self.subject, self.type


def seen(receivers: list[HttpReceiver]) -> list[Seen]:
    """Every request the receivers got."""
    out = []
    for project, receiver in enumerate(receivers):
        for request in receiver.requests:
            body = msgspec.json.decode(request.body)
            path = request.path.rsplit("/", 1)[1]
            alert = body["data"].get("alert")
            subject = (
                body["data"]["workflowId"] if path == RULE_PATH else body["data"]["executionId"]
            )
            out.append(
                Seen(project, path, request.headers["sim-delivery-id"], subject, body["type"],
                     alert["id"] if alert else None)
            )  # fmt: skip
    return out


@dataclass
class ScaleStack:
    """A broker, one API process and the settings the group members share."""

    api: Stack
    bootstrap: str
    work: Path
    shared: dict[str, str]

    def group(self, service: str, **settings: str) -> Group:
        return Group(service, self.bootstrap, self.work, self.shared | settings)


@pytest.fixture
async def scale_stack(tmp_path: Path, session: aiohttp.ClientSession) -> AsyncIterator[ScaleStack]:
    broker = EmbeddedBroker(0, tmp_path / "broker.log")
    services = external.active()  # the container profile's Kafka, or a broker of our own
    bootstrap = services.kafka(str(tmp_path)) if services else await broker.start()
    shared = {
        "CC_KAFKA_PARTITIONS": str(PARTITIONS),
        "CC_SECRET_KEY": "scale-out-secret-key-0123456789-abcdef",
        "CC_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'control.db'}",
        "CC_EGRESS_ALLOW_CIDRS": "127.0.0.0/8",
        "CC_RETRY_DELAYS": "1,2,3,4,5",
        "CC_PLANS": RAISED,
    }
    port = free_port()
    env = service_env(tmp_path / "api", bootstrap=bootstrap, http_port=port,
                      settings=shared | {"CC_ADMIN_TOKEN": ADMIN})  # fmt: skip
    process = start_service([CLI, "api"], env, tmp_path / "api.log", own_session=True)
    base_url = f"http://127.0.0.1:{port}"
    try:
        await wait_healthy(session, base_url, process)
        api = Stack(base_url, ADMIN, "", "", tmp_path / "api", process, bootstrap)
        yield ScaleStack(api, bootstrap, tmp_path, shared)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(20)
        broker.stop()


async def until(
    condition: Callable[[], Awaitable[bool] | bool],
    what: str,
    deadline: float,
    detail: Callable[[], str] = str,
) -> None:
    """Poll `condition` until it holds; fail naming `what` (and `detail()`) once `deadline`
    (monotonic) passed."""
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {detail()}"
        await asyncio.sleep(0.2)


def victim(group: Group, topic: str) -> Member:
    """A live member that holds partitions of `topic`."""
    shares = group.current(topic)
    index = next(i for i, share in shares.items() if share)
    return group.members[index]


@pytest.mark.slow
async def test_groups_lose_and_gain_members_while_events_flow_and_nothing_is_lost_or_doubled(
    scale_stack: ScaleStack, session: aiohttp.ClientSession
) -> None:
    deadline = time.monotonic() + DEADLINE_S
    stack = scale_stack
    engines = stack.group("alerts", CC_ALERTS_GROUP="scale-alerts").start(3)
    dispatchers = stack.group("dispatcher", CC_DISPATCHER_GROUP="scale-dispatch",
                              CC_PUBLIC_BASE_URL=stack.api.base_url).start(3)  # fmt: skip
    receivers = [HttpReceiver() for _ in range(PROJECTS)]
    try:
        for receiver in receivers:
            await receiver.__aenter__()
        keys = []
        for project, receiver in enumerate(receivers):
            _, key = await new_project(session, stack.api, name=f"scale-{project}")
            for path in PLAIN_PATHS:
                await subscribe(session, stack.api, key, f"{receiver.url}/{path}",
                                triggerFilter=["schedule"])  # fmt: skip
            await subscribe(session, stack.api, key, f"{receiver.url}/{RULE_PATH}",
                            alertConfig={"rule": "consecutive_failures", "consecutiveFailures": 3,
                                         "notifyOnResolve": True})  # fmt: skip
            keys.append(key)
        await until(lambda: engines.settled(topics.EXECUTIONS, PARTITIONS), "3 engines", deadline)
        await until(lambda: dispatchers.settled(topics.NOTIFICATIONS, PARTITIONS), "3 dispatchers",
                    deadline)  # fmt: skip
        start = datetime.now(UTC) - timedelta(minutes=10)
        killed: dict[str, Member] = {}
        added: dict[str, Member] = {}
        history: dict[str, int] = {}

        async def kill() -> None:
            for name, group, topic in (("alerts", engines, topics.EXECUTIONS),
                                       ("dispatcher", dispatchers, topics.NOTIFICATIONS)):  # fmt: skip
                member = victim(group, topic)
                member.stop(signal.SIGKILL)
                killed[name] = member
                history[name] = sum(len(m.assignments(topic)) for m in group.live())

        async def settled(members: int) -> None:
            await until(lambda: len(engines.live()) == members
                        and engines.settled(topics.EXECUTIONS, PARTITIONS),
                        f"{members} engines sharing the partitions", deadline)  # fmt: skip
            await until(lambda: len(dispatchers.live()) == members
                        and dispatchers.settled(topics.NOTIFICATIONS, PARTITIONS),
                        f"{members} dispatchers sharing the partitions", deadline)  # fmt: skip

        async def add() -> None:
            # The survivors take the victims' partitions over first: two rebalances to see.
            await settled(2)
            added["alerts"] = engines.add()
            added["dispatcher"] = dispatchers.add()

        async def send() -> None:
            changes: asyncio.Task[None] | None = None
            for batch in range(BATCHES):
                if batch == KILL_AFTER:
                    await kill()
                    changes = asyncio.create_task(add())
                if batch == ADD_AFTER:  # the rest flows while the added members join
                    assert changes is not None
                    await changes
                if batch == SETTLED_BEFORE:  # and the last batches after they have joined
                    await settled(3)
                events = batch_events(batch, start)
                status, _, body = await post_events(
                    session, stack.api, keys[project_of(batch)], events
                )
                assert status == 202, body
                await asyncio.sleep(PACE_S)  # pacing the load, not waiting for anything

        await send()
        wanted = expected(start)

        def missing() -> set[tuple[int, str, str, str]]:
            return wanted - {s.key for s in seen(receivers)}

        def lost() -> str:
            keys = sorted(missing())
            return f"{len(keys)} missing, {Counter(k[:2] for k in keys)}, e.g. {keys[:6]}"

        try:
            await until(lambda: not missing(), f"{len(wanted)} notifications", deadline, lost)
        except AssertionError as exc:
            produced = await on_notifications(stack.bootstrap, missing())
            behind = await committed_lag(stack.bootstrap, "scale-alerts", (topics.EXECUTIONS,))
            raise AssertionError(
                f"{exc}; of those, on `notifications`: {produced}; `executions` records the "
                f"engines have not committed: {behind}"
            ) from None

        async def quiet() -> bool:
            lag = await committed_lag(stack.bootstrap, "scale-dispatch", TIERS)
            return (
                lag == 0
                and await committed_lag(stack.bootstrap, "scale-alerts", (topics.EXECUTIONS,)) == 0
            )

        await until(quiet, "both groups to commit every record", deadline)
        entries = await read_topic(stack.bootstrap, topics.DELIVERY_LOG, LogEntry)
        check_deliveries(seen(receivers), wanted, entries)
        check_rebalances(engines, topics.EXECUTIONS, killed["alerts"], added["alerts"], history)
        check_rebalances(dispatchers, topics.NOTIFICATIONS, killed["dispatcher"],
                         added["dispatcher"], history)  # fmt: skip
        assert len(engines.live()) == 3 and len(dispatchers.live()) == 3
    finally:
        engines.stop()
        dispatchers.stop()
        for receiver in receivers:
            await receiver.__aexit__(None, None, None)


async def on_notifications(bootstrap: str, keys: set[tuple[int, str, str, str]]) -> str:
    """How many of the missing notifications the engines did produce (the rest they lost)."""
    subjects = {key[2] for key in keys}
    records = await read_topic(bootstrap, topics.NOTIFICATIONS, dict[str, Any])
    found = set()
    for record in records:
        data = record["payload"]["data"]
        found |= subjects & {data.get("executionId"), data.get("workflowId")}
    return f"{len(found)} of {len(subjects)} executions or workflows ({sorted(found)[:6]})"


def check_deliveries(
    got: list[Seen], wanted: set[tuple[int, str, str, str]], entries: list[Any]
) -> None:
    """Exactly the expected notifications, each one delivery; no attempt made twice."""
    assert {s.key for s in got} == wanted
    deliveries: dict[tuple[int, str, str, str], set[str]] = {}
    for s in got:
        deliveries.setdefault(s.key, set()).add(s.delivery_id)
    doubled = {key: ids for key, ids in deliveries.items() if len(ids) > 1}
    assert not doubled, f"notified twice under two delivery ids: {list(doubled.items())[:5]}"
    alerts = Counter((s.project, s.subject, s.type) for s in got if s.path == RULE_PATH)
    ids = {(s.project, s.subject): set() for s in got if s.path == RULE_PATH}
    for s in got:
        if s.path == RULE_PATH:
            assert s.alert_id, s
            ids[(s.project, s.subject)].add(s.alert_id)
    assert all(len(found) == 1 for found in ids.values()), "one alert per failing streak"
    assert len({i for found in ids.values() for i in found}) == len(ids), "no alert id twice"
    assert alerts  # fired and resolved notifications were seen
    started = Counter(
        tuple(key) for e in entries if isinstance(e, AttemptsStarted) for key in e.attempts
    )
    ended = Counter(
        (e.deliveryId, e.round, e.attempt) for e in entries if isinstance(e, DeliveryAttempt)
    )
    twice = [key for key, count in started.items() if count > 1]
    assert not twice, f"attempts started twice: {twice[:5]} ({len(twice)} in all)"
    assert all(count == 1 for count in ended.values()), "an attempt ended twice"
    assert set(started) == set(ended), "every attempt started has ended, and only those"
    per_delivery = Counter(s.delivery_id for s in got)
    attempts = Counter(key[0] for key in started)
    over = [d for d, count in per_delivery.items() if count > attempts[d]]
    assert not over, f"a receiver got more requests than attempts were made: {over[:5]}"


def check_rebalances(
    group: Group, topic: str, killed: Member, added: Member, before_kill: dict[str, int]
) -> None:
    """The logs show the victim's partitions taken over, and the added member given a share."""
    assert killed.assignments(topic), "the victim held partitions before the kill"
    survivors = [m for m in group.live() if m is not added]
    assert len(survivors) == 2
    after = sum(len(m.assignments(topic)) for m in survivors)
    assert after >= before_kill[group.service] + 2 * len(survivors), (
        "each survivor logged a rebalance for the kill and one for the added member"
    )
    victim_share = killed.assignments(topic)[-1]
    taken = [share for m in survivors for share in m.assignments(topic) if share & victim_share]
    assert taken, "the victim's partitions were assigned to survivors"
    assert added.assignments(topic)[-1], "the added member got a share"
    assert group.settled(topic, PARTITIONS)
