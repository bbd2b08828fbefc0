"""The alert engine without faust: records in, notifications and table writes out.

`Engine` handles one record of `executions`, `ticks` or `subscriptions` at a time for the
partition it came from; `Views` index the stored subscriptions in memory by partition and
project; `Tables` are the plain tables (dict-like) the state lives in. The faust wiring in
`services.alerts.app` feeds it; the benchmark feeds it plain dicts.

Errors: a record whose handling raises anything but a retryable `AppError` (`Unavailable`, the
broker) is poison: it goes to the dead-letter topic with the error and processing goes on with
the next record (its offset is committed like any other). `Unavailable` is waited out with
back-off on the same record, since every record would meet it.
"""

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, MutableMapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol, TypeVar

import msgspec
import structlog
from aiokafka.partitioner import murmur2
from prometheus_client import Counter

from schemas import topics
from schemas.destinations import RecordDecoder
from schemas.events import Event, ExecutionCompleted, ExecutionRecord, topic_key
from schemas.notifications import NotificationRecord, SubscriptionRecord
from schemas.ticks import Tick
from services.alerts import payload
from services.alerts.payload import Extras
from services.alerts.rules import arm, disarm, facts_of, on_execution, on_tick
from services.alerts.state import (
    ExecutionFacts,
    Subscription,
    WorkflowState,
    digests_add,
    digests_have,
    seen_digest,
)
from services.alerts.ticks import TickGate
from services.common.clock import Clock, iso_ms, now_ms, system_clock
from services.common.config import DEFAULT_PLANS, PlanLimits, Settings
from services.common.errors import AppError

log = structlog.get_logger(__name__)

TIMED_RULES = frozenset({"failure_rate", "error_count", "no_activity"})
KEPT_MONTHS = 2
MAX_WORKFLOWS = 10_000  # workflow states per project and partition; the least recent go first
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 30.0
MAX_REASON = 1000

DEAD_LETTERS = Counter(
    "cc_alerts_dead_letters", "Records the alert engine sent to alerts.dlq", ["topic"]
)
EVICTED = Counter("cc_alerts_evicted_workflows", "Workflow states dropped over the per-project cap")

_record: RecordDecoder[ExecutionRecord | SubscriptionRecord] = RecordDecoder(
    ExecutionRecord | SubscriptionRecord
)
_event = msgspec.json.Decoder(Event)
_subscription = RecordDecoder(SubscriptionRecord)
_tick = msgspec.json.Decoder(Tick)
_encode = msgspec.json.Encoder().encode
T = TypeVar("T")


class Message(Protocol):
    """What the engine reads of a consumed record (faust's message has these attributes)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: float


Send = Callable[[Sequence[NotificationRecord]], Awaitable[None]]
DeadLetter = Callable[[Message, str], Awaitable[None]]


class PoisonRecord(Exception):
    """A record the engine cannot read (undecodable, or not of its topic's schema)."""


def partition_of(key: bytes, partitions: int) -> int:
    """The partition the default Kafka partitioner gives a key (murmur2, as producers use)."""
    return (int(murmur2(key)) & 0x7FFFFFFF) % partitions


def split_key(key: bytes) -> tuple[str, str]:
    """(project, workflow) of a `<project>/<workflow>` state key."""
    project, _, workflow = key.decode().partition("/")
    return project, workflow


@dataclass(frozen=True)
class SubView:
    """A subscription prepared for matching: its record and its filters as sets."""

    record: SubscriptionRecord
    workflows: frozenset[str]
    levels: frozenset[str]
    triggers: frozenset[str]
    rule: Subscription | None

    @classmethod
    def of(cls, record: SubscriptionRecord) -> "SubView":
        """Prepare a record."""
        config = record.alertConfig
        return cls(
            record,
            frozenset(record.workflowIds),
            frozenset(record.levelFilter),
            frozenset(record.triggerFilter),
            None if config is None else Subscription(record.id, config, record.createdAtMs),
        )

    def covers(self, workflow_id: str) -> bool:
        """Whether the subscription watches this workflow of its project."""
        return self.record.active and (self.record.allWorkflows or workflow_id in self.workflows)

    def admits(self, event: ExecutionCompleted) -> bool:
        """Whether a plain subscription's level and trigger filters let an execution through."""
        level_ok = not self.levels or event.level in self.levels
        return level_ok and (not self.triggers or event.trigger in self.triggers)

    @property
    def timed(self) -> bool:
        """Whether its rule changes with time alone (evaluated on ticks)."""
        return self.rule is not None and self.rule.config.rule in TIMED_RULES


class Stored(msgspec.Struct, array_like=True):
    """A `workflow-states` value: the workflow's cost per month, its plan and its rule state.

    A watched workflow counts its cost here, in the row it writes anyway (one table write per
    execution); a workflow without state counts into its project's `ProjectCost` row, which
    also takes a workflow's cost when it loses its state.
    """

    cost: dict[str, Decimal]
    plan: str
    state: WorkflowState


class StoredHead(msgspec.Struct, array_like=True):
    """The leading fields of a `Stored` value, decoded without the rule state."""

    cost: dict[str, Decimal]
    plan: str


class ProjectCost(msgspec.Struct, array_like=True):
    """A `project-costs` value (key `<project>/<partition>`): the project's cost per month on
    that partition, its plan, and the latest executions counted without a workflow state (whose
    own seen ids would otherwise keep a resent execution from counting twice), as 8-byte digests
    laid end to end: the row is rewritten on every such execution, so its size is what the
    changelog carries per execution (8 KB at most instead of some 40 KB of ids)."""

    cost: dict[str, Decimal]
    plan: str
    seen: bytes


_stored = msgspec.json.Decoder(Stored)
_head = msgspec.json.Decoder(StoredHead)
_project_cost = msgspec.json.Decoder(ProjectCost)
_project_cost_ids = msgspec.json.Decoder(tuple[dict[str, Decimal], str, list[str]])


def decode_cost(raw: bytes) -> ProjectCost:
    """A stored cost row; a row written with whole ids (the earlier format) is read too."""
    try:
        return _project_cost.decode(raw)
    except msgspec.ValidationError:
        cost, plan, ids = _project_cost_ids.decode(raw)
    seen = b""
    for execution_id in ids:
        seen = digests_add(seen, seen_digest(execution_id))
    return ProjectCost(cost, plan, seen)


def cost_key(project: str, partition: int) -> bytes:
    """The `project-costs` key of a project's row on a partition."""
    return f"{project}/{partition}".encode()


class Views:
    """In-memory indexes of the tables over the partitions this worker holds.

    Workflow keys are kept per (partition, project) in the order they were last written, at most
    `max_workflows` of them: `add_key` returns the least recent ones beyond that for eviction.
    `starts` holds, per partition, the offset of the earliest marker of each subscription on
    that partition of `executions` (see `covering`).
    """

    def __init__(self, max_workflows: int = MAX_WORKFLOWS) -> None:
        self.max_workflows = max_workflows
        self.subs: dict[int, dict[str, SubView]] = defaultdict(dict)
        self.starts: dict[int, dict[str, int]] = defaultdict(dict)
        self._keys: dict[int, dict[str, dict[bytes, None]]] = defaultdict(lambda: defaultdict(dict))
        self.costs: dict[int, dict[str, ProjectCost]] = defaultdict(dict)
        # partition -> project -> workflow state key -> its cost per month
        self.wf_costs: dict[int, dict[str, dict[bytes, dict[str, Decimal]]]] = defaultdict(
            lambda: defaultdict(dict)
        )
        self.plans: dict[str, str] = {}
        self._by_project: dict[int, dict[str, list[SubView]]] = {}

    def add_key(self, partition: int, key: bytes) -> list[bytes]:
        """Index (or refresh) a workflow state key; the keys evicted over the project's cap."""
        keys = self._keys[partition][split_key(key)[0]]
        keys.pop(key, None)
        keys[key] = None
        evicted: list[bytes] = []
        while len(keys) > self.max_workflows:
            oldest = next(iter(keys))
            del keys[oldest]
            evicted.append(oldest)
        return evicted

    def discard_key(self, partition: int, key: bytes) -> None:
        """Forget a workflow state key."""
        project = split_key(key)[0]
        self.set_wf_cost(partition, key, {})
        keys = self._keys.get(partition, {}).get(project)
        if keys is not None:
            keys.pop(key, None)
            if not keys:
                del self._keys[partition][project]

    def keys(self, partition: int) -> list[bytes]:
        """The workflow state keys of a partition."""
        return [k for keys in self._keys.get(partition, {}).values() for k in keys]

    def key_count(self) -> int:
        """How many workflow state keys are indexed, over all partitions."""
        return sum(len(keys) for by in self._keys.values() for keys in by.values())

    def project_keys(self, partition: int, project: str) -> set[bytes]:
        """The workflow state keys of one project on a partition."""
        return set(self._keys.get(partition, {}).get(project, ()))

    def project_subs(self, partition: int, project: str) -> list[SubView]:
        """The subscriptions of a project as seen on a partition."""
        index = self._by_project.get(partition)
        if index is None:
            index = defaultdict(list)
            for view in self.subs[partition].values():
                index[view.record.projectId].append(view)
            self._by_project[partition] = index
        return index.get(project, [])

    def covering(
        self, partition: int, project: str, workflow: str, at_ms: int, offset: int | None = None
    ) -> list[SubView]:
        """The active subscriptions that watch a workflow and had begun for an input.

        An execution record at `offset` of `executions` comes after a subscription whose marker
        on that partition has a lower offset: log order on one partition, the same whichever
        topic the subscription was learnt from first. Without a known marker (a record from
        before markers, or a tick) the subscription had begun if it was created by `at_ms`.
        """
        return self.begun(partition, self.watching(partition, project, workflow), at_ms, offset)

    def watching(self, partition: int, project: str, workflow: str) -> list[SubView]:
        """The active subscriptions of a project that watch a workflow, begun or not."""
        return [s for s in self.project_subs(partition, project) if s.covers(workflow)]

    def begun(
        self, partition: int, subs: list[SubView], at_ms: int, offset: int | None
    ) -> list[SubView]:
        """Those of `subs` that had begun for an input (see `covering`)."""
        starts = self.starts.get(partition, {})
        return [s for s in subs if _begun(s, starts.get(s.record.id), at_ms, offset)]

    def put_sub(self, partition: int, view: SubView) -> bool:
        """Add or replace a subscription, unless a newer version is already known."""
        self.note_start(partition, view.record.id, view.record.markerOffset)
        known = self.subs[partition].get(view.record.id)
        if known is not None and known.record.version > view.record.version:
            return False
        self.subs[partition][view.record.id] = view
        self._by_project.pop(partition, None)
        return True

    def note_start(self, partition: int, sub_id: str, offset: int | None) -> int | None:
        """Keep the earliest known marker offset of a subscription on a partition."""
        starts = self.starts[partition]
        if offset is not None and (sub_id not in starts or offset < starts[sub_id]):
            starts[sub_id] = offset
        return starts.get(sub_id)

    def preload(self, partition: int, key: bytes, value: bytes | None) -> None:
        """Take in a record read straight from the `subscriptions` topic; one that is not a
        subscription is skipped here (the stream dead-letters it when it gets there)."""
        try:
            if value is None:
                self.drop_sub(partition, key.decode().rpartition("/")[0])
            else:
                self.put_sub(partition, SubView.of(_subscription.decode(value)))
        except Exception as exc:  # whatever it is, it must not stop the read-ahead
            log.warning("alerts.preload_skipped", partition=partition, error=repr(exc)[:200])

    def drop_sub(self, partition: int, sub_id: str) -> None:
        """Forget a subscription."""
        self.subs[partition].pop(sub_id, None)
        self.starts[partition].pop(sub_id, None)
        self._by_project.pop(partition, None)

    def set_wf_cost(self, partition: int, key: bytes, cost: dict[str, Decimal]) -> None:
        """Index (an empty `cost`: forget) a watched workflow's cost per month."""
        project = split_key(key)[0]
        by_key = self.wf_costs[partition][project]
        if cost:
            by_key[key] = cost
        else:
            by_key.pop(key, None)
            if not by_key:
                del self.wf_costs[partition][project]

    def period_cost(
        self,
        project: str,
        month: str,
        pending: tuple[int, bytes, dict[str, Decimal]] | None = None,
    ) -> Decimal:
        """A project's cost in a month over the partitions held here: its cost rows and its
        watched workflows' costs; `pending` is a workflow's cost not yet written back."""
        total = Decimal(0)
        for by in self.costs.values():
            row = by.get(project)
            if row is not None:
                total += row.cost.get(month, Decimal(0))
        for partition, by_project in self.wf_costs.items():
            for key, cost in by_project.get(project, {}).items():
                if pending is None or (partition, key) != pending[:2]:
                    total += cost.get(month, Decimal(0))
        if pending is not None:
            total += pending[2].get(month, Decimal(0))
        return total

    def forget(self, partitions: Iterable[int]) -> None:
        """Drop what belongs to partitions no longer held."""
        for partition in partitions:
            indexes = (self._keys, self.costs, self.wf_costs, self.subs, self.starts)
            for index in (*indexes, self._by_project):
                index.pop(partition, None)

    def index_state(self, partition: int, key: bytes, value: bytes | None) -> None:
        """Index a stored workflow state (None: deleted) under its partition, with its plan."""
        if value is None:
            self.discard_key(partition, key)
        else:
            self.add_key(partition, key)
            head = _head.decode(value)
            self.plans.setdefault(split_key(key)[0], head.plan)
            self.set_wf_cost(partition, key, head.cost)

    def index_cost(self, partition: int, key: bytes, value: bytes | None) -> None:
        """Index a stored project cost row (None: deleted)."""
        project = key.decode().rpartition("/")[0]
        if value is None:
            self.costs[partition].pop(project, None)
        else:
            row = decode_cost(value)
            self.costs[partition][project] = row
            self.plans[project] = row.plan

    def index_subscription(self, partition: int, key: bytes, value: bytes | None) -> None:
        """Index a stored subscription (None: deleted)."""
        sub_id = key.decode().rpartition("/")[0]
        if value is None:
            self.drop_sub(partition, sub_id)
        else:
            self.put_sub(partition, SubView.of(_subscription.decode(value)))


def _begun(view: SubView, start: int | None, at_ms: int, offset: int | None) -> bool:
    if start is not None and offset is not None:
        return offset > start
    return view.record.createdAtMs <= at_ms


@dataclass(frozen=True)
class Tables:
    """The durable state: faust tables in the worker, dicts in benchmarks."""

    states: MutableMapping[bytes, bytes]
    subscriptions: MutableMapping[bytes, bytes]
    costs: MutableMapping[bytes, bytes] = field(default_factory=dict)


class Engine:
    """Turns consumed records into notifications and table writes, one record at a time."""

    def __init__(
        self,
        settings: Settings,
        partitions: int,
        tables: Tables,
        views: Views,
        send: Send,
        gate: TickGate,
        dead_letter: DeadLetter,
        clock: Clock = system_clock,
    ) -> None:
        self.settings = settings
        self.partitions = partitions
        self.tables = tables
        self.views = views
        self.send = send
        self.gate = gate
        self.dead_letters = dead_letter
        self.clock = clock
        self.capped: set[str] = set()

    async def handle(self, message: Message) -> None:
        """Handle one record; never raises but for cancellation (see the module docstring)."""
        await self.settle(message, self.dispatch)
        if message.topic == topics.EXECUTIONS:
            # Also after a dead letter: a tick waiting for this offset must not wait forever.
            due = self.gate.executed(message.partition, message.offset)
            if due is not None:
                await self.settle(message, lambda m: self.on_tick(m.partition, due.atMs))

    async def settle(self, message: Message, work: Callable[[Message], Awaitable[None]]) -> None:
        """Run `work` on a record: dead-letter it when it fails, retry while the broker is out."""
        backoff = _Backoff()
        while True:
            try:
                await work(message)
                return
            except Exception as exc:  # whatever one record raises is that record's
                if not _retryable(exc):
                    await self.dead_letter(message, exc)
                    return
                await backoff.wait(message, exc)

    async def dead_letter(self, message: Message, exc: Exception) -> None:
        """Send a record that failed to the dead-letter topic, with the error."""
        reason = _describe(exc)
        log.warning("alerts.dead_letter", topic=message.topic, partition=message.partition,
                    offset=message.offset, error=reason)  # fmt: skip
        DEAD_LETTERS.labels(message.topic).inc()
        backoff = _Backoff()
        while True:
            try:
                await self.dead_letters(message, reason)
                return
            except Exception as failure:  # the record is skipped all the same, never retried
                if not _retryable(failure):
                    log.error("alerts.dead_letter_failed", topic=message.topic,
                              partition=message.partition, offset=message.offset,
                              error=_describe(failure))  # fmt: skip
                    return
                await backoff.wait(message, failure)

    async def dispatch(self, message: Message) -> None:
        """Handle a record by topic."""
        if message.topic == topics.EXECUTIONS:
            await self.on_executions(message)
        elif message.topic == topics.TICKS:
            await self.on_tick_record(message)
        elif message.topic == topics.SUBSCRIPTIONS:
            await self.on_subscription(message)

    async def on_executions(self, message: Message) -> None:
        """Evaluate the completed executions of a record, or take in a subscription marker."""
        record = _decode(_record, message.value)
        if isinstance(record, SubscriptionRecord):
            self.on_marker(message, record)
            return
        events = [_decode(_event, raw) for raw in record.events]
        completed = [e for e in events if isinstance(e, ExecutionCompleted)]
        for workflow_id, group in _by_workflow(completed).items():
            await self.on_completed(message, record, workflow_id, group)

    async def on_completed(
        self,
        message: Message,
        record: ExecutionRecord,
        workflow_id: str,
        events: list[ExecutionCompleted],
    ) -> None:
        """A workflow's executions in one record: notifications first, then the state writes.

        A workflow that no subscription of its project covers (begun or not) keeps no state
        and loses the state it had: only its cost is counted.
        """
        partition, project = message.partition, record.projectId
        self.views.plans[project] = record.plan
        watching = self.views.watching(partition, project, workflow_id)
        key = topic_key(project, workflow_id)
        if not watching:
            self.count_untracked(partition, project, record.plan, events, key)
            return
        subs = self.views.begun(partition, watching, record.receivedAtMs, message.offset)
        stored = self.load(key, workflow_id)
        stored.plan = record.plan
        out: list[NotificationRecord] = []
        fresh = False
        for event in events:
            notes = self.evaluate(partition, key, stored, subs, record, event)
            fresh = fresh or notes is not None
            out += notes or []
        if fresh:
            await self.send(out)
            self.store(partition, key, stored)

    def count_untracked(
        self, partition: int, project: str, plan: str, events: list[ExecutionCompleted], key: bytes
    ) -> None:
        """Count the cost of executions of a workflow without state, each once; a state it had
        is dropped and its cost taken into the project's row."""
        row = self.cost_row(partition, project, plan)
        fresh = self.fold(partition, key, row)
        for event in events:
            digest = seen_digest(event.executionId)
            if digests_have(row.seen, digest):
                continue
            row.seen = digests_add(row.seen, digest)
            _add_cost(row.cost, facts_of(event))
            fresh = True
        if fresh:
            self.store_cost(partition, project, row)

    def fold(self, partition: int, key: bytes, row: ProjectCost) -> bool:
        """Drop a workflow's state, adding its cost into its project's row; whether it had one."""
        raw = self.tables.states.pop(key, None)
        if raw is None:
            return False
        self.views.discard_key(partition, key)
        for month, amount in _head.decode(raw).cost.items():
            row.cost[month] = row.cost.get(month, Decimal(0)) + amount
        return True

    def evaluate(
        self,
        partition: int,
        key: bytes,
        stored: Stored,
        subs: list[SubView],
        record: ExecutionRecord,
        event: ExecutionCompleted,
    ) -> list[NotificationRecord] | None:
        """One completed execution's notifications; None for a duplicate (nothing changes)."""
        facts = facts_of(event)
        if facts.execution_id in stored.state.seen:
            return None
        rules = [s.rule for s in subs if s.rule is not None]
        cooldown = self.settings.alert_cooldown_s
        stored.state, alerts = on_execution(stored.state, rules, facts, cooldown)
        _add_cost(stored.cost, facts)
        plain = [s for s in subs if s.rule is None and s.admits(event)]
        if not plain and not alerts:
            return []
        extras = self.extras(record.projectId, facts.ended_ms, (partition, key, stored.cost))
        created = now_ms(self.clock)
        out = [
            payload.execution_notification(record.projectId, event, s.record, extras, created)
            for s in plain
        ]
        return out + self.alert_records(partition, record.projectId, alerts, event, extras)

    def cost_row(self, partition: int, project: str, plan: str) -> ProjectCost:
        """A copy of a project's cost row on a partition (new for a new project), to change and
        write back: the views change only with the table."""
        row = self.views.costs[partition].get(project)
        if row is None:
            raw = self.tables.costs.get(cost_key(project, partition))
            return ProjectCost({}, plan, b"") if raw is None else decode_cost(raw)
        return ProjectCost(dict(row.cost), plan, row.seen)

    def store_cost(self, partition: int, project: str, row: ProjectCost) -> None:
        """Write a project's cost row back."""
        self.tables.costs[cost_key(project, partition)] = _encode(row)
        self.views.costs[partition][project] = row

    async def on_tick_record(self, message: Message) -> None:
        """Admit a tick; apply it now if its partition's executions are processed far enough."""
        tick = _decode(_tick, message.value)
        tick = msgspec.structs.replace(tick, partition=message.partition)
        due = await self.gate.admit(tick)
        if due is not None:
            await self.on_tick(message.partition, due.atMs)

    async def on_tick(self, partition: int, at_ms: int) -> None:
        """Let event time reach `at_ms` for every watched workflow of the partition."""
        for key in self.views.keys(partition):
            project, workflow = split_key(key)
            covering = self.views.covering(partition, project, workflow, at_ms)
            subs = [s for s in covering if s.timed]
            if subs:
                await self.tick_workflow(partition, key, subs, at_ms)

    async def tick_workflow(
        self, partition: int, key: bytes, subs: list[SubView], at_ms: int
    ) -> None:
        """Run the time-driven rules of one workflow; store it only when a watch changed."""
        project, workflow = split_key(key)
        stored = self.load(key, workflow)
        before = _encode(stored.state.watches)
        rules = [s.rule for s in subs if s.rule is not None]
        cooldown = self.settings.alert_cooldown_s
        stored.state, alerts = on_tick(stored.state, rules, at_ms, cooldown)
        if alerts:
            extras = self.extras(project, at_ms)
            await self.send(self.alert_records(partition, project, alerts, None, extras))
        if alerts or _encode(stored.state.watches) != before:
            self.store(partition, key, stored)

    async def on_subscription(self, message: Message) -> None:
        """Apply a record of the compacted `subscriptions` topic to its partition."""
        key = message.key or b""
        sub_id, _, _ = key.decode().rpartition("/")
        record = None if message.value is None else _decode(_subscription, message.value)
        self.apply_subscription(message, sub_id, record)

    def on_marker(self, message: Message, record: SubscriptionRecord) -> None:
        """Apply a subscription marker on `executions`: the subscription begins at its offset."""
        marked = msgspec.structs.replace(record, markerOffset=message.offset)
        self.apply_subscription(message, record.id, marked)

    def apply_subscription(
        self, message: Message, sub_id: str, record: SubscriptionRecord | None
    ) -> None:
        """Apply a subscription change to this partition: store it, then arm or disarm.

        `applied` is the version this partition last handled (the table); the views may
        already hold a newer one, read ahead when the partition was assigned, and executions
        may have been evaluated against it. What the change is compared with is therefore the
        view: the read-ahead version arriving again is no change (its watches, with their
        cooldowns, stay), and an older version is skipped (the newer one follows). The
        earliest marker offset is kept whichever version or topic brought it.
        """
        partition = message.partition
        key = f"{sub_id}/{partition}".encode()
        stored = self.tables.subscriptions.get(key)
        applied = None if stored is None else SubView.of(_subscription.decode(stored))
        marker = None if record is None else record.markerOffset
        start = self.views.note_start(partition, sub_id, marker)
        known = self.views.subs[partition].get(sub_id)
        if record is not None:
            newest = max((v.record.version for v in (applied, known) if v is not None), default=0)
            if record.version < newest:
                if applied is not None and start != applied.record.markerOffset:
                    marked = msgspec.structs.replace(applied.record, markerOffset=start)
                    self.tables.subscriptions[key] = _encode(marked)
                return
        previous = known or applied
        current = None
        if record is None or record.deleted:
            self.views.drop_sub(partition, sub_id)
            self.tables.subscriptions.pop(key, None)
        else:
            marked = msgspec.structs.replace(record, markerOffset=start)
            current = SubView.of(marked)
            self.views.put_sub(partition, current)
            self.tables.subscriptions[key] = _encode(marked)
        self.rearm(partition, previous, current, _armed_ms(record, message))

    def rearm(
        self, partition: int, previous: SubView | None, current: SubView | None, at_ms: int
    ) -> None:
        """Arm the rule for the workflows it now watches here; disarm it for the others."""
        view = current or previous
        if view is None or (view.rule is None and (previous is None or previous.rule is None)):
            return
        reset = previous is None or current is None or _rule_changed(previous, current)
        for key in self.watched_keys(partition, view):
            workflow = split_key(key)[1]
            stored = self.load(key, workflow)
            before = _encode(stored.state.watches)
            if reset or current is None or current.rule is None or not current.covers(workflow):
                disarm(stored.state, view.record.id)
            if current is not None and current.rule is not None and current.covers(workflow):
                arm(stored.state, current.record.id, at_ms)
            if _encode(stored.state.watches) != before:
                self.store(partition, key, stored)

    def watched_keys(self, partition: int, view: SubView) -> set[bytes]:
        """State keys on this partition the subscription may concern: its project's workflows
        seen here plus the ones it lists."""
        project = view.record.projectId
        keys = self.views.project_keys(partition, project)
        listed = (topic_key(project, w) for w in view.record.workflowIds)
        keys.update(k for k in listed if partition_of(k, self.partitions) == partition)
        return keys

    def alert_records(
        self,
        partition: int,
        project: str,
        alerts: Sequence[Any],
        event: ExecutionCompleted | None,
        extras: Extras,
    ) -> list[NotificationRecord]:
        """Notifications for the engine's alerts."""
        created = now_ms(self.clock)
        subs = self.views.subs[partition]
        records = []
        for alert in alerts:
            log.info("alerts.alert", id=alert.id, kind=alert.kind, rule=alert.rule,
                     subscription=alert.notificationId, workflow=alert.workflowId)  # fmt: skip
            sub = subs[alert.notificationId].record
            records.append(payload.alert_notification(project, alert, event, sub, extras, created))
        return records

    def extras(
        self, project: str, at_ms: int, pending: tuple[int, bytes, dict[str, Decimal]] | None = None
    ) -> Extras:
        """The project's plan limits and month-to-date cost at `at_ms` (with a workflow's cost
        not yet written back)."""
        plan = self.views.plans.get(project, "free")
        cost = self.views.period_cost(project, iso_ms(at_ms)[:7], pending)
        return Extras(plan, self.limits(plan), cost)

    def limits(self, plan: str) -> PlanLimits:
        """A plan's limits; an unknown plan name gets the free plan's."""
        try:
            return self.settings.plan(plan)
        except KeyError:
            return DEFAULT_PLANS["free"]

    def load(self, key: bytes, workflow_id: str) -> Stored:
        """A workflow's stored value (a fresh one for a new workflow)."""
        raw = self.tables.states.get(key)
        if raw is None:
            return Stored({}, self.views.plans.get(split_key(key)[0], "free"),
                          WorkflowState(workflow_id=workflow_id))  # fmt: skip
        return _stored.decode(raw)

    def store(self, partition: int, key: bytes, stored: Stored) -> None:
        """Write a workflow's value back; drop the project's least recent ones over the cap
        (their cost goes into the project's row)."""
        self.tables.states[key] = _encode(stored)
        self.views.set_wf_cost(partition, key, stored.cost)
        evicted = self.views.add_key(partition, key)
        if evicted:
            project = split_key(key)[0]
            row = self.cost_row(partition, project, stored.plan)
            for old in evicted:
                self.fold(partition, old, row)
            self.store_cost(partition, project, row)
            EVICTED.inc(len(evicted))
            if project not in self.capped:  # once per project: the counter tells the rest
                self.capped.add(project)
                log.warning("alerts.workflows_capped", project=project, partition=partition,
                            cap=self.views.max_workflows)  # fmt: skip


def _add_cost(cost: dict[str, Decimal], facts: ExecutionFacts) -> None:
    """Count an execution's cost into its month; months before the previous are dropped."""
    month = iso_ms(facts.ended_ms)[:7]
    cost[month] = cost.get(month, Decimal(0)) + (facts.cost or Decimal(0))
    for old in sorted(cost)[:-KEPT_MONTHS]:
        del cost[old]


def _by_workflow(events: list[ExecutionCompleted]) -> dict[str, list[ExecutionCompleted]]:
    """Events grouped by workflow, in order (a record normally holds one workflow's)."""
    groups: dict[str, list[ExecutionCompleted]] = defaultdict(list)
    for event in events:
        groups[event.workflowId].append(event)
    return groups


def _decode(decoder: "msgspec.json.Decoder[T] | RecordDecoder[T]", value: bytes | None) -> T:
    """A record's value decoded, or PoisonRecord."""
    try:
        return decoder.decode(value or b"")
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise PoisonRecord(str(exc)) from exc


def _retryable(exc: Exception) -> bool:
    return isinstance(exc, AppError) and exc.retryable


class _Backoff:
    """Doubling waits, from RETRY_FIRST_S up to RETRY_MAX_S, each one logged."""

    def __init__(self) -> None:
        self.delay_s = RETRY_FIRST_S

    async def wait(self, message: Message, exc: Exception) -> None:
        log.warning("alerts.unavailable", topic=message.topic, offset=message.offset,
                    partition=message.partition, error=_describe(exc),
                    retry_in_s=self.delay_s)  # fmt: skip
        await asyncio.sleep(self.delay_s)
        self.delay_s = min(self.delay_s * 2, RETRY_MAX_S)


def _describe(exc: Exception) -> str:
    """The error for the dead-letter header: its type and message, bounded."""
    try:
        text = f"{type(exc).__name__}: {exc}"
    except Exception:  # a message that cannot be rendered (an int too long for str)
        text = type(exc).__name__
    return text[:MAX_REASON]


def _armed_ms(record: SubscriptionRecord | None, message: Message) -> int:
    """When a rule starts watching: its creation, or the time of the version that changed it."""
    if record is not None and record.version == 1:
        return record.createdAtMs
    return round(message.timestamp * 1000)


def _rule_changed(previous: SubView, current: SubView) -> bool:
    return previous.record.alertConfig != current.record.alertConfig or not previous.record.active
