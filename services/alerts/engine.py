"""The alert engine without faust: records in, notifications and table writes out.

`Engine` handles one record of `executions`, `ticks` or `subscriptions` at a time for the
partition it came from; `Views` index the stored subscriptions in memory by partition and
project; `Tables` are the two plain tables (dict-like) the state lives in. The faust wiring in
`services.alerts.app` feeds it; the benchmark feeds it plain dicts.
"""

from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

import msgspec
import structlog
from aiokafka.partitioner import murmur2

from schemas import topics
from schemas.events import Event, ExecutionCompleted, ExecutionRecord, topic_key
from schemas.notifications import NotificationRecord, SubscriptionRecord
from services.alerts import payload
from services.alerts.payload import Extras
from services.alerts.rules import arm, disarm, facts_of, on_execution, on_tick
from services.alerts.state import ExecutionFacts, Subscription, WorkflowState
from services.alerts.ticks import Tick, TickGate
from services.common.clock import Clock, iso_ms, now_ms, system_clock
from services.common.config import DEFAULT_PLANS, PlanLimits, Settings

log = structlog.get_logger(__name__)

TIMED_RULES = frozenset({"failure_rate", "error_count", "no_activity"})
KEPT_MONTHS = 2

_record = msgspec.json.Decoder(ExecutionRecord)
_event = msgspec.json.Decoder(Event)
_subscription = msgspec.json.Decoder(SubscriptionRecord)
_tick = msgspec.json.Decoder(Tick)
_encode = msgspec.json.Encoder().encode


class Message(Protocol):
    """What the engine reads of a consumed record (faust's message has these attributes)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: float


Send = Callable[[Sequence[NotificationRecord]], Awaitable[None]]


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
    """A `workflow-states` value: the workflow's cost per month, its plan, its rule state.

    Cost lives here, written together with the seen execution ids, so a resent execution is
    never counted twice; the project's month-to-date cost is the sum over its workflows.
    """

    cost: dict[str, Decimal]
    plan: str
    state: WorkflowState


class StoredHead(msgspec.Struct, array_like=True):
    """The leading fields of a `Stored` value, decoded without the rule state."""

    cost: dict[str, Decimal]
    plan: str


_stored = msgspec.json.Decoder(Stored)
_head = msgspec.json.Decoder(StoredHead)


class Views:
    """In-memory indexes of the tables over the partitions this worker holds."""

    def __init__(self) -> None:
        self.subs: dict[int, dict[str, SubView]] = defaultdict(dict)
        self._keys: dict[int, dict[str, set[bytes]]] = defaultdict(lambda: defaultdict(set))
        self._costs: dict[bytes, dict[str, Decimal]] = {}
        self._totals: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
        self.plans: dict[str, str] = {}
        self._by_project: dict[int, dict[str, list[SubView]]] = {}

    def add_key(self, partition: int, key: bytes) -> None:
        """Index a workflow state key under its partition and project."""
        self._keys[partition][split_key(key)[0]].add(key)

    def discard_key(self, partition: int, key: bytes) -> None:
        """Forget a workflow state key."""
        self._keys[partition][split_key(key)[0]].discard(key)
        self.note_cost(key, {})

    def note_cost(self, key: bytes, cost: Mapping[str, Decimal]) -> None:
        """Set a workflow's cost per month, keeping its project's monthly totals."""
        project = split_key(key)[0]
        for month, amount in self._costs.pop(key, {}).items():
            self._totals[(project, month)] -= amount
        for month, amount in cost.items():
            self._totals[(project, month)] += amount
        if cost:
            self._costs[key] = dict(cost)

    def keys(self, partition: int) -> list[bytes]:
        """The workflow state keys of a partition."""
        return [k for keys in self._keys.get(partition, {}).values() for k in keys]

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

    def covering(self, partition: int, project: str, workflow: str, at_ms: int) -> list[SubView]:
        """The active subscriptions that watch a workflow and existed at `at_ms`."""
        return [
            s
            for s in self.project_subs(partition, project)
            if s.record.createdAtMs <= at_ms and s.covers(workflow)
        ]

    def put_sub(self, partition: int, view: SubView) -> bool:
        """Add or replace a subscription, unless a newer version is already known."""
        known = self.subs[partition].get(view.record.id)
        if known is not None and known.record.version > view.record.version:
            return False
        self.subs[partition][view.record.id] = view
        self._by_project.pop(partition, None)
        return True

    def preload(self, partition: int, key: bytes, value: bytes | None) -> None:
        """Take in a record read straight from the `subscriptions` topic."""
        if value is None:
            self.drop_sub(partition, key.decode().rpartition("/")[0])
        else:
            self.put_sub(partition, SubView.of(_subscription.decode(value)))

    def drop_sub(self, partition: int, sub_id: str) -> None:
        """Forget a subscription."""
        self.subs[partition].pop(sub_id, None)
        self._by_project.pop(partition, None)

    def period_cost(self, project: str, month: str) -> Decimal:
        """A project's cost in a month over its workflows on the partitions held here."""
        return self._totals.get((project, month), Decimal(0))

    def forget(self, partitions: Iterable[int]) -> None:
        """Drop what belongs to partitions no longer held."""
        for partition in partitions:
            for keys in self._keys.pop(partition, {}).values():
                for key in keys:
                    self.note_cost(key, {})
            self.subs.pop(partition, None)
            self._by_project.pop(partition, None)

    def index_state(self, partition: int, key: bytes, value: bytes | None) -> None:
        """Index a stored workflow state (None: deleted) under its partition, with its cost."""
        if value is None:
            self.discard_key(partition, key)
        else:
            head = _head.decode(value)
            self.add_key(partition, key)
            self.note_cost(key, head.cost)
            self.plans[split_key(key)[0]] = head.plan

    def index_subscription(self, partition: int, key: bytes, value: bytes | None) -> None:
        """Index a stored subscription (None: deleted)."""
        sub_id = key.decode().rpartition("/")[0]
        if value is None:
            self.drop_sub(partition, sub_id)
        else:
            self.put_sub(partition, SubView.of(_subscription.decode(value)))


@dataclass(frozen=True)
class Tables:
    """The durable state: faust tables in the worker, dicts in benchmarks."""

    states: MutableMapping[bytes, bytes]
    subscriptions: MutableMapping[bytes, bytes]


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
        clock: Clock = system_clock,
    ) -> None:
        self.settings = settings
        self.partitions = partitions
        self.tables = tables
        self.views = views
        self.send = send
        self.gate = gate
        self.clock = clock

    async def handle(self, message: Message) -> None:
        """Dispatch a record by topic."""
        if message.topic == topics.EXECUTIONS:
            await self.on_executions(message)
        elif message.topic == topics.TICKS:
            await self.on_tick_record(message)
        elif message.topic == topics.SUBSCRIPTIONS:
            await self.on_subscription(message)

    async def on_executions(self, message: Message) -> None:
        """Evaluate the completed executions of a record, then apply a tick it made due."""
        decoded = _decode_executions(message)
        if decoded is not None:
            record, events = decoded
            for workflow_id, group in _by_workflow(events).items():
                await self.on_completed(message.partition, record, workflow_id, group)
        due = self.gate.executed(message.partition, message.offset)
        if due is not None:
            await self.on_tick(message.partition, due.atMs)

    async def on_completed(
        self,
        partition: int,
        record: ExecutionRecord,
        workflow_id: str,
        events: list[ExecutionCompleted],
    ) -> None:
        """A workflow's executions in one record: notifications first, then one state write."""
        key = topic_key(record.projectId, workflow_id)
        stored = self.load(partition, key, workflow_id)
        stored.plan = record.plan
        self.views.plans[record.projectId] = record.plan
        subs = self.views.covering(partition, record.projectId, workflow_id, record.receivedAtMs)
        out: list[NotificationRecord] = []
        fresh = False
        for event in events:
            notes = self.evaluate(partition, stored, subs, record, event)
            fresh = fresh or notes is not None
            out += notes or []
        if fresh:
            await self.send(out)
            self.store(partition, key, stored)

    def evaluate(
        self,
        partition: int,
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
        self.add_cost(key_of(record, event), stored, facts)
        plain = [s for s in subs if s.rule is None and s.admits(event)]
        if not plain and not alerts:
            return []
        extras = self.extras(record.projectId, facts.ended_ms)
        created = now_ms(self.clock)
        out = [
            payload.execution_notification(record.projectId, event, s.record, extras, created)
            for s in plain
        ]
        return out + self.alert_records(partition, record.projectId, alerts, event, extras)

    def add_cost(self, key: bytes, stored: Stored, facts: ExecutionFacts) -> None:
        """Count an execution's cost into its month; months before the previous are dropped."""
        month = iso_ms(facts.ended_ms)[:7]
        stored.cost[month] = stored.cost.get(month, Decimal(0)) + (facts.cost or Decimal(0))
        for old in sorted(stored.cost)[:-KEPT_MONTHS]:
            del stored.cost[old]
        self.views.note_cost(key, stored.cost)

    async def on_tick_record(self, message: Message) -> None:
        """Admit a tick; apply it now if its partition's executions are processed far enough."""
        try:
            tick = _tick.decode(message.value or b"")
        except (msgspec.DecodeError, msgspec.ValidationError):
            log.warning("alerts.bad_tick", partition=message.partition, offset=message.offset)
            return
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
        stored = self.load(partition, key, workflow)
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
        """Apply a subscription change to this partition: store it, then arm or disarm.

        `applied` is the version this partition last handled (the table); the views may
        already hold a newer one, read ahead when the partition was assigned, and executions
        may have been evaluated against it. What the change is compared with is therefore the
        view: the read-ahead version arriving on the stream is no change (its watches, with
        their cooldowns, stay), and an older version is skipped (the newer one follows).
        """
        key = message.key or b""
        partition = message.partition
        stored = self.tables.subscriptions.get(key)
        applied = None if stored is None else SubView.of(_subscription.decode(stored))
        record = None if message.value is None else _decode_subscription(message)
        if message.value is not None and record is None:
            return
        known = self.views.subs[partition].get(key.decode().rpartition("/")[0])
        if record is not None:
            newest = max((v.record.version for v in (applied, known) if v is not None), default=0)
            if record.version < newest:
                return
        previous = known or applied
        current = None if record is None or record.deleted else SubView.of(record)
        if current is None:
            self.views.drop_sub(partition, key.decode().rpartition("/")[0])
            self.tables.subscriptions.pop(key, None)
        else:
            self.views.put_sub(partition, current)
            self.tables.subscriptions[key] = message.value or b""
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
            stored = self.load(partition, key, workflow)
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

    def extras(self, project: str, at_ms: int) -> Extras:
        """The project's plan limits and month-to-date cost at `at_ms`."""
        plan = self.views.plans.get(project, "free")
        return Extras(plan, self.limits(plan), self.views.period_cost(project, iso_ms(at_ms)[:7]))

    def limits(self, plan: str) -> PlanLimits:
        """A plan's limits; an unknown plan name gets the free plan's."""
        try:
            return self.settings.plan(plan)
        except KeyError:
            return DEFAULT_PLANS["free"]

    def load(self, partition: int, key: bytes, workflow_id: str) -> Stored:
        """A workflow's stored value (a fresh one for a new workflow), indexed in the views."""
        raw = self.tables.states.get(key)
        if raw is None:
            stored = Stored({}, self.views.plans.get(split_key(key)[0], "free"),
                            WorkflowState(workflow_id=workflow_id))  # fmt: skip
        else:
            stored = _stored.decode(raw)
        self.views.add_key(partition, key)
        return stored

    def store(self, partition: int, key: bytes, stored: Stored) -> None:
        """Write a workflow's value back (a table value is only persisted when re-assigned)."""
        self.tables.states[key] = _encode(stored)
        self.views.add_key(partition, key)


def key_of(record: ExecutionRecord, event: ExecutionCompleted) -> bytes:
    """The state key of an execution's workflow."""
    return topic_key(record.projectId, event.workflowId)


def _by_workflow(events: list[ExecutionCompleted]) -> dict[str, list[ExecutionCompleted]]:
    """Events grouped by workflow, in order (a record normally holds one workflow's)."""
    groups: dict[str, list[ExecutionCompleted]] = defaultdict(list)
    for event in events:
        groups[event.workflowId].append(event)
    return groups


def _decode_executions(message: Message) -> tuple[ExecutionRecord, list[ExecutionCompleted]] | None:
    try:
        record = _record.decode(message.value or b"")
        events = [_event.decode(raw) for raw in record.events]
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        log.warning("alerts.bad_execution_record", partition=message.partition,
                    offset=message.offset, error=str(exc))  # fmt: skip
        return None
    return record, [e for e in events if isinstance(e, ExecutionCompleted)]


def _decode_subscription(message: Message) -> SubscriptionRecord | None:
    """The record, or None (logged) when it cannot be decoded."""
    try:
        return _subscription.decode(message.value or b"")
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        log.warning("alerts.bad_subscription", partition=message.partition,
                    offset=message.offset, error=str(exc))  # fmt: skip
        return None


def _armed_ms(record: SubscriptionRecord | None, message: Message) -> int:
    """When a rule starts watching: its creation, or the time of the version that changed it."""
    if record is not None and record.version == 1:
        return record.createdAtMs
    return round(message.timestamp * 1000)


def _rule_changed(previous: SubView, current: SubView) -> bool:
    return previous.record.alertConfig != current.record.alertConfig or not previous.record.active
