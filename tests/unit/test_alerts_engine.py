"""The alert engine on records, without Kafka: tables in dicts, notifications collected.

These pin down orders faust may interleave the co-partitioned topics in, for a worker that read
the subscriptions ahead when its partitions were assigned (a fresh worker replaying the log).
"""

import asyncio
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import topics
from schemas.alerts import AlertEvent
from schemas.events import ExecutionRecord, topic_key
from schemas.notifications import NotificationRecord, SubscriptionRecord
from services.alerts import engine as engine_module
from services.alerts.engine import Engine
from services.alerts.state import digests_have, seen_digest
from services.alerts.tables import Tables, decode_cost
from services.alerts.ticks import Tick, TickGate
from services.alerts.views import Views, partition_of
from services.common.config import Settings
from services.common.errors import Unavailable
from tests import factories
from tests.factories import execution, execution_record

PARTITIONS = 3
PROJECT = "prj_engine"
T0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)


def subscription(
    version: int = 1, threshold: str = "0.5", rule: dict[str, Any] | None = None
) -> SubscriptionRecord:
    config = rule or {"rule": "cost_threshold", "costThresholdDollars": threshold}
    return msgspec.convert(
        {
            "v": 1, "id": "ntf_cost", "projectId": PROJECT, "version": version,
            "deleted": False, "notificationType": "webhook", "workflowIds": [],
            "allWorkflows": True, "levelFilter": ["info", "error"], "triggerFilter": [],
            "includeFinalOutput": False, "includeTraceSpans": False,
            "includeRateLimits": False, "includeUsageData": False, "active": True,
            "createdAtMs": int(T0.timestamp() * 1000) - 60_000,
            "destination": {"type": "webhook", "url": "https://hooks.example.com/cc"},
            "alertConfig": config,
        },
        SubscriptionRecord,
    )  # fmt: skip


class World:
    def __init__(self, max_workflows: int = 10_000, tables: Tables | None = None) -> None:
        self.sent: list[NotificationRecord] = []
        self.events: list[AlertEvent] = []
        self.dead: list[tuple[Any, str]] = []
        self.offsets: dict[tuple[str, int], int] = defaultdict(int)  # next, by topic-partition
        settings = Settings(data_dir=Path("unused"), clickhouse_url="", database_url="")
        self.views = Views(max_workflows=max_workflows)
        self.tables = tables or Tables({}, {}, {})
        self.engine = Engine(
            settings, PARTITIONS, self.tables, self.views, self.send, TickGate(self.start),
            self.dead_letter, record_events=self.record_events,
        )  # fmt: skip

    async def send(self, records: Any) -> None:
        self.sent.extend(records)

    async def record_events(self, events: Any) -> None:
        self.events.extend(events)

    async def dead_letter(self, message: Any, reason: str) -> None:
        self.dead.append((message, reason))

    async def start(self, partition: int) -> int:
        return 0

    def message(self, topic: str, partition: int, key: bytes, value: bytes) -> SimpleNamespace:
        offset = self.offsets[topic, partition]
        self.offsets[topic, partition] += 1
        return SimpleNamespace(
            topic=topic, partition=partition, offset=offset, key=key, value=value,
            timestamp=time.time(),
        )  # fmt: skip

    def read_ahead(self, record: SubscriptionRecord) -> None:
        for p in range(PARTITIONS):
            self.views.preload(p, f"{record.id}/{p}".encode(), msgspec.json.encode(record))

    async def subscription_on_stream(self, record: SubscriptionRecord) -> None:
        for p in range(PARTITIONS):
            value = msgspec.json.encode(record)
            await self.engine.handle(
                self.message(topics.SUBSCRIPTIONS, p, f"{record.id}/{p}".encode(), value)
            )

    async def tick(self, at: datetime) -> None:
        for p in range(PARTITIONS):
            end = self.offsets[topics.EXECUTIONS, p]  # after every execution handled so far
            tick = Tick(v=1, partition=p, atMs=int(at.timestamp() * 1000), executionsEnd=end)
            await self.engine.handle(
                self.message(topics.TICKS, p, b"tick", msgspec.json.encode(tick))
            )

    async def execution(self, execution_id: str, minutes: float, cost: float) -> None:
        ended = T0 + timedelta(minutes=minutes)
        event = execution(execution_id, "wf1", ended=ended, duration_ms=50, cost=cost)
        record = execution_record(
            PROJECT, event, received_at_ms=int(ended.timestamp() * 1000), retention_days=7,
            plan="pro",
        )  # fmt: skip
        key = topic_key(PROJECT, "wf1")
        message = self.message(topics.EXECUTIONS, partition_of(key, PARTITIONS), key, record)
        await self.engine.handle(message)

    def alerts(self) -> list[str]:
        return [msgspec.to_builtins(r.payload)["data"]["executionId"] for r in self.sent]

    def alert_ids(self) -> list[str]:
        return [msgspec.to_builtins(r.payload)["data"]["alert"]["id"] for r in self.sent]


async def test_the_read_ahead_subscription_arriving_on_the_stream_keeps_the_cooldown() -> None:
    world = World()
    world.read_ahead(subscription())
    await world.execution("ex-1", 0, 0.75)  # fires
    await world.subscription_on_stream(subscription())  # the same version: no change
    await world.execution("ex-2", 1, 0.75)  # within the hour's cooldown
    assert world.alerts() == ["ex-1"]


async def test_an_older_version_on_the_stream_does_not_undo_the_newer_one_read_ahead() -> None:
    world = World()
    world.read_ahead(subscription(version=2, threshold="1"))
    await world.subscription_on_stream(subscription(version=1, threshold="0.5"))
    await world.execution("ex-1", 0, 0.75)  # 0.75 is over version 1's threshold, not version 2's
    await world.subscription_on_stream(subscription(version=2, threshold="1"))
    await world.execution("ex-2", 1, 1.5)
    assert world.alerts() == ["ex-2"]


async def test_a_changed_rule_on_the_stream_starts_its_watches_afresh() -> None:
    world = World()
    world.read_ahead(subscription())
    await world.subscription_on_stream(subscription())
    await world.execution("ex-1", 0, 0.75)
    await world.subscription_on_stream(subscription(version=2, threshold="0.6"))
    await world.execution("ex-2", 1, 0.75)  # a new rule: no cooldown carried over
    assert world.alerts() == ["ex-1", "ex-2"]


async def test_no_activity_is_armed_at_creation_whichever_record_comes_first() -> None:
    # The subscription was created a minute before T0; an execution that ended 5 minutes before
    # T0 arrives after it. Arming is at creation in both orders, so the alert is the same.
    idle = subscription(rule={"rule": "no_activity", "inactivityHours": 0.5})
    ids = []
    for read_ahead in (False, True):
        world = World()
        if read_ahead:
            world.read_ahead(idle)
        else:
            await world.subscription_on_stream(idle)
        await world.execution("ex-1", -5, 0.01)
        if read_ahead:
            await world.subscription_on_stream(idle)
        await world.tick(T0 + timedelta(minutes=28))  # 30 min after the execution: not yet
        assert world.sent == []
        await world.tick(T0 + timedelta(minutes=30))  # 30 min after creation: due
        assert len(world.sent) == 1
        ids.append(world.alert_ids()[0])
    assert ids[0] == ids[1]


# ---- subscription markers on executions (a subscription applies after its marker) ---------


def plain(sub_id: str = "ntf_plain", version: int = 1) -> SubscriptionRecord:
    return msgspec.structs.replace(
        subscription(version), id=sub_id, alertConfig=None, createdAtMs=int(T0.timestamp() * 1000)
    )


def marked(record: SubscriptionRecord, offsets: dict[int, int]) -> dict[int, SubscriptionRecord]:
    return {p: msgspec.structs.replace(record, markerOffset=o) for p, o in offsets.items()}


async def markers(world: World, record: SubscriptionRecord) -> dict[int, int]:
    """The record as a marker on every partition of executions; the offsets it got."""
    offsets = {}
    for p in range(PARTITIONS):
        message = world.message(topics.EXECUTIONS, p, f"{record.id}/{p}".encode(),
                                msgspec.json.encode(record))  # fmt: skip
        offsets[p] = message.offset
        await world.engine.handle(message)
    return offsets


async def test_an_execution_after_the_marker_is_notified_before_the_compacted_record_arrives() -> (
    None
):
    world = World()
    await world.execution("ex-before", 0.5, 0.01)  # received after createdAtMs, before the marker
    offsets = await markers(world, plain())
    await world.execution("ex-after", 1, 0.01)
    assert world.alerts() == ["ex-after"]
    for p, record in marked(plain(), offsets).items():  # the compacted records, later
        await world.engine.handle(world.message(
            topics.SUBSCRIPTIONS, p, f"{record.id}/{p}".encode(), msgspec.json.encode(record)
        ))  # fmt: skip
    await world.execution("ex-later", 2, 0.01)
    assert world.alerts() == ["ex-after", "ex-later"]
    assert world.dead == []


async def test_a_replay_with_the_compacted_records_read_ahead_decides_the_same() -> None:
    live = World()
    await live.execution("ex-0", 0.5, 0.75)
    offsets = await markers(live, subscription())
    for minute in (1, 2, 70):
        await live.execution(f"ex-{minute}", minute, 0.75)
    replay = World()
    for p, record in marked(subscription(), offsets).items():
        replay.views.preload(p, f"{record.id}/{p}".encode(), msgspec.json.encode(record))
    await replay.execution("ex-0", 0.5, 0.75)
    await markers(replay, subscription())
    for minute in (1, 2, 70):
        await replay.execution(f"ex-{minute}", minute, 0.75)
    assert live.alerts() == ["ex-1", "ex-70"]
    assert replay.alert_ids() == live.alert_ids()


async def test_a_record_without_marker_offset_falls_back_to_the_creation_time() -> None:
    world = World()
    world.read_ahead(plain())  # created at T0, no marker known
    await world.execution("ex-early", -1, 0.01)
    await world.execution("ex-late", 1, 0.01)
    assert world.alerts() == ["ex-late"]


# ---- a subscription that stops watching ends its open alerts ----------------------------------


def _resolves(world: World) -> list[tuple[str, int, bool, str]]:
    return [(e.alertId, e.version, e.notified, e.reason) for e in world.events
            if e.kind == "resolved"]  # fmt: skip


async def test_deleting_a_subscription_resolves_its_firing_alert_and_notifies_nobody() -> None:
    world = World()
    await world.subscription_on_stream(subscription())
    await world.execution("ex-1", 0, 0.75)  # fires, and stays firing while costs stay high
    [fired] = world.alert_ids()
    deleted = msgspec.structs.replace(subscription(version=2), deleted=True)
    await world.subscription_on_stream(deleted)
    assert _resolves(world) == [(fired, 2, False, "Resolved: the subscription was deleted.")]
    for p in range(PARTITIONS):  # the tombstone that follows finds nothing left to end
        await world.engine.handle(world.message(topics.SUBSCRIPTIONS, p, f"ntf_cost/{p}".encode(),
                                                None))  # type: ignore[arg-type]  # fmt: skip
    await world.execution("ex-2", 1, 0.75)
    assert len(world.sent) == 1 and len(_resolves(world)) == 1


async def test_pausing_or_changing_the_rule_ends_the_episode_and_a_new_rule_starts_a_new_one() -> (
    None
):
    paused = World()
    await paused.subscription_on_stream(subscription())
    await paused.execution("ex-1", 0, 0.75)
    off = msgspec.structs.replace(subscription(version=2), active=False)
    await paused.subscription_on_stream(off)
    assert _resolves(paused) == [(paused.alert_ids()[0], 2, False,
                                  "Resolved: the subscription was turned off.")]  # fmt: skip
    changed = World()
    await changed.subscription_on_stream(subscription())
    await changed.execution("ex-1", 0, 0.75)
    await changed.subscription_on_stream(subscription(version=2, threshold="0.6"))
    await changed.execution("ex-2", 1, 0.75)  # the new rule fires: a new alert
    first, second = changed.alert_ids()
    assert first != second
    assert _resolves(changed) == [(first, 2, False,
                                   "Resolved: the subscription's alert rule was changed.")]  # fmt: skip


async def test_a_deletion_by_marker_then_by_compacted_record_ends_the_alert_once() -> None:
    world = World()
    await world.subscription_on_stream(subscription())
    await world.execution("ex-1", 0, 0.75)
    deleted = msgspec.structs.replace(subscription(version=2), deleted=True)
    offsets = await markers(world, deleted)
    assert len(_resolves(world)) == 1
    for p, record in marked(deleted, offsets).items():
        await world.engine.handle(world.message(
            topics.SUBSCRIPTIONS, p, f"{record.id}/{p}".encode(), msgspec.json.encode(record)
        ))  # fmt: skip
    assert len(_resolves(world)) == 1 and world.dead == []


async def test_deleting_a_subscription_whose_alert_already_resolved_records_nothing() -> None:
    world = World()
    await world.subscription_on_stream(subscription())
    await world.execution("ex-1", 0, 0.75)
    await world.execution("ex-2", 1, 0.25)  # under the threshold: the episode resolves
    assert [e.kind for e in world.events] == ["fired", "resolved"]
    await world.subscription_on_stream(msgspec.structs.replace(subscription(version=2),
                                                               deleted=True))  # fmt: skip
    assert [e.kind for e in world.events] == ["fired", "resolved"]


# ---- poison records go to the dead-letter path -----------------------------------------------


def execution_value(event: dict[str, Any], project: str = PROJECT) -> bytes:
    received_at_ms = int(T0.timestamp() * 1000)
    return execution_record(
        project, event, received_at_ms=received_at_ms, retention_days=7, plan="pro"
    )


# The execution every test here sends when its time and cost do not matter.
completed = partial(
    factories.completed,
    workflow_id="wf1",
    ended=T0 + timedelta(seconds=1),
    duration_ms=1000,
    cost=None,
)


async def test_a_deep_value_is_dead_lettered_and_the_next_execution_still_notifies() -> None:
    world = World()
    world.read_ahead(plain())
    deep = b'{"kind":"execution","v":2,"events":[' + b"[" * 50_000 + b"]" * 50_000 + b"]}"
    key = topic_key(PROJECT, "wf1")
    p = partition_of(key, PARTITIONS)
    await world.engine.handle(world.message(topics.EXECUTIONS, p, key, deep))
    await world.engine.handle(
        world.message(topics.EXECUTIONS, p, key, execution_value(completed("ex-good")))
    )
    assert [reason.split(":")[0] for _, reason in world.dead] == ["RecursionError"]
    assert world.alerts() == ["ex-good"]


async def test_a_broker_outage_is_retried_on_the_same_record(monkeypatch: Any) -> None:
    world = World()
    world.read_ahead(plain())
    calls = []

    async def flaky_send(records: Any) -> None:
        calls.append(len(records))
        if len(calls) == 1:
            raise Unavailable("broker down")
        world.sent.extend(records)

    monkeypatch.setattr("services.alerts.records.RETRY_FIRST_S", 0)
    world.engine.send = flaky_send
    await world.execution("ex-1", 0, 0.01)
    assert world.alerts() == ["ex-1"] and world.dead == [] and calls == [1, 1]


async def test_any_exception_of_one_record_dead_letters_it_and_the_next_goes_on(
    monkeypatch: Any,
) -> None:
    world = World()
    world.read_ahead(plain())
    real = engine_module.on_execution

    def on_execution(state: Any, rules: Any, facts: Any, *args: Any) -> Any:
        if facts.execution_id == "ex-bad":
            raise ZeroDivisionError("a bug in a rule")
        return real(state, rules, facts, *args)

    monkeypatch.setattr(engine_module, "on_execution", on_execution)
    await world.execution("ex-bad", 0, 0.01)
    await world.execution("ex-good", 1, 0.01)
    huge = execution_value(completed("ex-huge", totalDurationMs=0)).replace(
        b'"totalDurationMs":0', b'"totalDurationMs":' + b"9" * 5000
    )
    key = topic_key(PROJECT, "wf1")
    await world.engine.handle(
        world.message(topics.EXECUTIONS, partition_of(key, PARTITIONS), key, huge)
    )
    assert world.alerts() == ["ex-good"]
    assert world.dead[0][1] == "ZeroDivisionError: a bug in a rule"
    assert len(world.dead) == 2  # a number beyond str()'s limit cannot be rendered: poison


async def test_a_dead_letter_waits_for_the_broker_and_a_refused_one_is_skipped(
    monkeypatch: Any,
) -> None:
    world = World()
    monkeypatch.setattr("services.alerts.records.RETRY_FIRST_S", 0)
    attempts: list[str] = []

    async def dead_letter(message: Any, reason: str) -> None:
        attempts.append(reason)
        if len(attempts) == 1:
            raise Unavailable("broker down")
        if len(attempts) == 3:
            raise ValueError("refused for good")

    world.engine.dead_letters = dead_letter
    await world.engine.handle(world.message(topics.EXECUTIONS, 0, b"k", b"not json"))
    await world.engine.handle(world.message(topics.TICKS, 0, b"k", b"not json either"))
    assert len(attempts) == 3  # the first retried once; the second refused, skipped, no raise


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)
FIELDS = st.sampled_from([
    "kind", "v", "projectId", "receivedAtMs", "retentionDays", "events", "plan", "id", "version",
    "deleted", "workflowIds", "allWorkflows", "active", "createdAtMs", "markerOffset",
    "alertConfig", "destination", "levelFilter", "triggerFilter",
])  # fmt: skip


def shaped(base: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """A valid-looking record with some fields replaced by arbitrary values (huge numbers too)."""
    odd = JSON | st.integers(min_value=10**30, max_value=10**60) | st.just("x" * 300)
    return st.dictionaries(FIELDS, odd, max_size=4).map(lambda changes: {**base, **changes})


EXECUTION = {"kind": "execution", "v": 2, "projectId": PROJECT, "receivedAtMs": 0,
             "retentionDays": 7, "events": [completed("ex-h", totalDurationMs=10**40)]}  # fmt: skip
MARKER = msgspec.to_builtins(plain("ntf_hyp"))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    topic=st.sampled_from([topics.EXECUTIONS, topics.TICKS, topics.SUBSCRIPTIONS]),
    key=st.binary(max_size=30) | st.just(b"ntf_hyp/0"),
    value=st.binary(max_size=200)
    | JSON.map(msgspec.json.encode)
    | shaped(EXECUTION).map(msgspec.json.encode)
    | shaped(MARKER).map(msgspec.json.encode)
    | shaped(msgspec.to_builtins(Tick(1, 0, 0, 0))).map(msgspec.json.encode),
    depth=st.integers(0, 3000),
)
def test_any_record_is_handled_or_dead_lettered_and_never_raises(
    topic: str, key: bytes, value: bytes, depth: int
) -> None:
    world = World()
    world.read_ahead(subscription(rule={"rule": "latency_spike", "latencySpikePercent": 10}))
    if depth > 2000:
        value = b"[" * depth * 10 + b"]" * depth * 10
    message = world.message(topic, 0, key, value)
    asyncio.run(world.engine.handle(message))
    undecodable = topic == topics.EXECUTIONS and not _decodes(value)
    assert not undecodable or [m for m, _ in world.dead] == [message]
    good = world.message(topics.EXECUTIONS, 0, b"k", execution_value(completed("ex-next")))
    asyncio.run(world.engine.handle(good))  # the engine goes on after any record


def _decodes(value: bytes) -> bool:
    try:
        msgspec.json.decode(value, type=ExecutionRecord | SubscriptionRecord)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return False
    return True


# ---- bounded state -----------------------------------------------------------------------------


async def test_state_stays_bounded_when_a_project_mints_100_000_workflow_ids() -> None:
    world = World(max_workflows=50)
    spiky = msgspec.structs.replace(
        subscription(rule={"rule": "consecutive_failures", "consecutiveFailures": 3}),
        projectId="prj_watched",
    )
    world.read_ahead(spiky)
    for n in range(100_000):
        project = "prj_watched" if n % 2 else "prj_quiet"
        workflow = f"wf-{n}"
        key = topic_key(project, workflow)
        value = execution_value(completed(f"ex-{n}", workflowId=workflow, cost={"total": 0.01}),
                                project)  # fmt: skip
        await world.engine.handle(
            world.message(topics.EXECUTIONS, partition_of(key, PARTITIONS), key, value)
        )
    assert world.dead == []
    assert world.views.key_count() <= 50 * PARTITIONS
    assert len(world.tables.states) == world.views.key_count()
    assert set(world.tables.costs) <= {f"{p}/{n}".encode()
                                       for p in ("prj_watched", "prj_quiet") for n in range(3)}  # fmt: skip
    assert all(len(r.seen) <= 8000 for by in world.views.costs.values() for r in by.values())
    assert world.views.period_cost("prj_quiet", "2026-11") == Decimal("500.00")
    # watched workflows count in their own rows; evicted ones were folded into the project's
    assert world.views.period_cost("prj_watched", "2026-11") == Decimal("500.00")


async def test_a_workflow_whose_subscriptions_are_gone_loses_its_state() -> None:
    world = World()
    world.read_ahead(plain())
    await world.execution("ex-1", 0, 0.01)
    assert world.tables.states
    deleted = msgspec.structs.replace(plain(version=2), deleted=True)
    await world.subscription_on_stream(deleted)
    await world.execution("ex-2", 1, 0.01)
    assert world.tables.states == {} and world.views.key_count() == 0
    # its cost went into the project's row: counted once, nothing lost
    assert world.views.period_cost(PROJECT, "2026-11") == Decimal("0.02")


class CountingTable(dict[bytes, bytes]):
    """A table that counts its writes (each one a changelog record in the worker)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.writes += 1
        super().__setitem__(key, value)


async def test_a_watched_execution_is_one_table_write_and_counted_once() -> None:
    states, costs = CountingTable(), CountingTable()
    world = World(tables=Tables(states, {}, costs))
    world.read_ahead(plain())
    await world.execution("ex-1", 0, 0.25)
    await world.execution("ex-1", 0, 0.25)  # resent: neither evaluated nor counted again
    await world.execution("ex-2", 1, 0.5)
    assert (states.writes, costs.writes) == (2, 0)  # one changelog record per execution
    assert world.views.period_cost(PROJECT, "2026-11") == Decimal("0.75")


def test_the_read_ahead_skips_what_is_not_a_subscription() -> None:
    # A garbage record on `subscriptions` once crashed the worker while partitions were assigned.
    world = World()
    for value in (b"\xff\xfe", b"{}", b"[]", b"null", b"[" * 5000 + b"]" * 5000):
        world.views.preload(0, b"\xff/0", value)
        world.views.preload(0, b"ntf_x/0", value)
    world.views.preload(0, b"\xff", None)
    world.read_ahead(subscription())
    assert set(world.views.subs[0]) == {"ntf_cost"}


def test_a_cost_row_stored_with_whole_ids_is_read_as_digests() -> None:
    row = decode_cost(b'[{"2026-11":"1.50"},"free",["ex-1","ex-2"]]')
    assert row.cost == {"2026-11": Decimal("1.50")} and row.plan == "free"
    assert digests_have(row.seen, seen_digest("ex-2")) and len(row.seen) == 16
