"""The alert engine without faust: records in, notifications and table writes out.

`Engine` handles one record of `executions`, `ticks`, `subscriptions`, `silences` or
`alert-acks` at a time
for the partition it came from: completed executions are evaluated here, subscription changes
and markers are applied by `Subscriptions`, workflow values and cost rows are kept by the
`Ledger`, and `Views` index the `Tables` (and the silences, which need no table: they are read
ahead from their compacted topic at every assignment) in memory by partition and project.

Silences are applied at emission time, from event time (the execution's end, or the tick's
time), each in its version whose marker on `executions` the record follows (see
`Views.project_silences`; the marker, a `SilenceRecord` on `executions`, is applied here like
a subscription's; a tick forgets the silences over for more than SILENCE_MEMORY_MS): the rules
return a notification a silence takes as `silenced` (see `services.alerts.rules`), which is
logged (`alerts.silenced`) and counted (`cc_alerts_silenced_total`) instead of sent.
Acknowledgements (`alert-acks`, kept in the views like silences) are applied the same way: to
the records after their marker on `executions` (an `AckRecord` there, applied here), or by
event time when no marker offset is known (see `Views.acknowledged`).

Every event of an alert episode (a notification, a muted one, a resolve notifying no one) is
also produced to `alert-events` (`record_events`), for the log sink's `alerts` table; like the
notifications, before the state that follows from it is written. The faust wiring in
`services.alerts.app` feeds it; the benchmark feeds it plain dicts.

Errors: `Engine.handle` never raises for a record; what a record's handling raises is settled
as `services.alerts.records` describes (a dead letter, or back-off while the broker is out).
"""

from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec
import structlog
from prometheus_client import Counter

from schemas import topics
from schemas.alerts import AckRecord, Alert, AlertEvent
from schemas.destinations import RecordDecoder
from schemas.events import Event, ExecutionCompleted, ExecutionRecord, topic_key
from schemas.notifications import NotificationRecord, SubscriptionRecord
from schemas.silences import SilenceRecord
from schemas.ticks import Tick
from services.alerts import payload
from services.alerts.batch import Batch, Enter, WriteRows, anywhere, write_each
from services.alerts.ledger import Ledger, add_cost
from services.alerts.payload import Extras
from services.alerts.records import DeadLetter, Message, decode, settle
from services.alerts.rules import (
    Acked,
    Muted,
    facts_of,
    never_acked,
    never_muted,
    on_execution,
    on_tick,
)
from services.alerts.state import has_seen
from services.alerts.subscriptions import Subscriptions
from services.alerts.tables import Stored, Tables
from services.alerts.ticks import TickGate
from services.alerts.views import SubView, Views, split_key
from services.common.clock import Clock, now_ms, system_clock
from services.common.config import Settings
from services.common.silences import is_active, matches

log = structlog.get_logger(__name__)

# How long after it is over a silence is still kept in the views: a tick forgets the ones over
# for longer (so that silences created and ended over months cost no memory). A workflow whose
# event time lags its partition's ticks by more than this is no longer muted by such a silence.
SILENCE_MEMORY_MS = 7 * 24 * 3600 * 1000

_record: RecordDecoder[ExecutionRecord | SubscriptionRecord | SilenceRecord | AckRecord] = (
    RecordDecoder(ExecutionRecord | SubscriptionRecord | SilenceRecord | AckRecord)
)
_event = msgspec.json.Decoder(Event)
_tick = msgspec.json.Decoder(Tick)
SILENCED = Counter("cc_alerts_silenced", "Alert notifications muted by a silence", ["kind"])
_encode = msgspec.json.Encoder().encode

Send = Callable[[Sequence[NotificationRecord]], Awaitable[None]]
RecordEvents = Callable[[Sequence[AlertEvent]], Awaitable[None]]


async def _no_events(_events: Sequence[AlertEvent]) -> None:
    """Alert events go nowhere (benchmarks and tests that only look at notifications)."""


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
        record_events: RecordEvents = _no_events,
        write_rows: WriteRows = write_each,
    ) -> None:
        self.settings = settings
        self.partitions = partitions
        self.tables = tables
        self.views = views
        self.send = send
        self.gate = gate
        self.dead_letters = dead_letter
        self.clock = clock
        self.record_events = record_events
        self.batch = Batch(tables, write_rows)
        self.ledger = Ledger(settings, self.batch.tables, views)
        self.subscriptions = Subscriptions(partitions, self.batch, views, self.ledger)

    async def handle(self, message: Message) -> None:
        """Handle one record and carry out its effects."""
        await self.handle_batch([message])

    async def handle_batch(self, messages: Sequence[Message], enter: Enter = anywhere) -> None:
        """Handle records in log order, then carry out their effects together (see
        `services.alerts.batch`, which calls `enter` before a partition's table writes); never
        raises but for cancellation (see the module docstring)."""
        self.batch.enter = enter
        for message in messages:
            await self.handle_one(message)
        await self.batch.flush(self.produce, self.settle)

    async def produce(
        self, notifications: list[NotificationRecord], events: list[AlertEvent]
    ) -> None:
        """Produce outputs and wait for their acks: the notifications, then the alert events."""
        if notifications:
            await self.send(notifications)
        if events:
            await self.record_events(events)

    async def handle_one(self, message: Message) -> None:
        """Handle one record of a batch: its effects wait for the batch's flush."""
        self.batch.begin(message.partition)
        await self.settle(message, self.dispatch)
        if message.topic == topics.EXECUTIONS:
            # Also after a dead letter: a tick waiting for this offset must not wait forever.
            due = self.gate.executed(message.partition, message.offset)
            if due is not None:
                await self.settle(message, lambda m: self.on_tick(m, due.atMs, due.executionsEnd))

    async def settle(self, message: Message, work: Callable[[Message], Awaitable[None]]) -> None:
        """Run `work` on a record: dead-letter it when it fails, retry while the broker is out."""
        await settle(message, work, self.dead_letters)

    async def dispatch(self, message: Message) -> None:
        """Handle a record by topic."""
        if message.topic == topics.EXECUTIONS:
            await self.on_executions(message)
        elif message.topic == topics.TICKS:
            await self.on_tick_record(message)
        elif message.topic == topics.SUBSCRIPTIONS:
            self.subscriptions.on_record(message)
        elif message.topic == topics.SILENCES:
            self.on_silence(message)
        elif message.topic == topics.ALERT_ACKS:
            self.on_ack(message)

    def on_ack(self, message: Message) -> None:
        """Apply a record of the compacted `alert-acks` topic to its partition's view."""
        self.views.apply_ack(message.partition, message.key, message.value)

    def on_ack_marker(self, message: Message, record: AckRecord) -> None:
        """Apply an acknowledgement marker on `executions`: it applies from this offset on."""
        marked = msgspec.structs.replace(record, markerOffset=message.offset)
        self.views.put_ack(message.partition, marked)

    def acked(self, partition: int, offset: int | None = None) -> Acked:
        """Whether an alert was acknowledged, as seen on the partition, for the input at
        `offset` of `executions` (see `Views.acknowledged`), at an event time."""
        if not self.views.acks.get(partition):
            return never_acked

        def acked(alert_id: str, at_ms: int) -> bool:
            return self.views.acknowledged(partition, alert_id, at_ms, offset)

        return acked

    def on_silence(self, message: Message) -> None:
        """Apply a record of the compacted `silences` topic to its partition's view."""
        self.views.apply_silence(message.partition, message.key, message.value)

    def on_silence_marker(self, message: Message, record: SilenceRecord) -> None:
        """Apply a silence marker on `executions`: its version applies from this offset on."""
        marked = msgspec.structs.replace(record, markerOffset=message.offset)
        self.views.put_silence(message.partition, marked)

    def muted(self, partition: int, project: str, workflow: str, offset: int | None) -> Muted:
        """Whether a silence of the project, as it stood on the partition for the input at
        `offset` of `executions`, takes a notification of this workflow at an event time."""
        silences = self.views.project_silences(partition, project, offset)
        if not silences:
            return never_muted

        def muted(subscription_id: str, rule: str, at_ms: int) -> bool:
            return any(
                matches(s, subscription_id, workflow, rule) and is_active(s, at_ms)
                for s in silences
            )

        return muted

    async def on_executions(self, message: Message) -> None:
        """Evaluate the completed executions of a record, or take in a subscription, silence or
        acknowledgement marker."""
        record = decode(_record, message.value)
        if isinstance(record, SubscriptionRecord):
            self.subscriptions.on_marker(message, record)
            return
        if isinstance(record, SilenceRecord):
            self.on_silence_marker(message, record)
            return
        if isinstance(record, AckRecord):
            self.on_ack_marker(message, record)
            return
        events = [decode(_event, raw) for raw in record.events]
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
            self.ledger.count_untracked(partition, project, record.plan, events, key)
            return
        subs = self.views.begun(partition, watching, record.receivedAtMs, message.offset)
        stored = self.ledger.load(key, workflow_id)
        stored.plan = record.plan
        out: list[NotificationRecord] = []
        alert_events: list[AlertEvent] = []
        fresh = False
        for event in events:
            notes = self.evaluate(
                partition, key, stored, subs, record, event, message.offset, alert_events
            )
            fresh = fresh or notes is not None
            out += notes or []
        if fresh:
            self.batch.add(message, out, alert_events)
            self.ledger.store(partition, key, stored)

    def evaluate(
        self,
        partition: int,
        key: bytes,
        stored: Stored,
        subs: list[SubView],
        record: ExecutionRecord,
        event: ExecutionCompleted,
        offset: int | None = None,
        alert_events: list[AlertEvent] | None = None,
    ) -> list[NotificationRecord] | None:
        """One completed execution's notifications; None for a duplicate (nothing changes).
        `offset`: the record's on `executions` (which silence versions and acknowledgements
        apply); the events of its alerts are appended to `alert_events`."""
        facts = facts_of(event)
        if has_seen(stored.state, facts.execution_id):
            return None
        rules = [s.rule for s in subs if s.rule is not None]
        cooldown = self.settings.alert_cooldown_s
        muted = self.muted(partition, record.projectId, event.workflowId, offset)
        acked = self.acked(partition, offset)
        stored.state, all_alerts = on_execution(stored.state, rules, facts, cooldown, muted, acked)
        if alert_events is not None:
            alert_events += [payload.alert_event(record.projectId, a) for a in all_alerts]
        alerts = self.notifying(record.projectId, all_alerts)
        add_cost(stored.cost, facts)
        plain = [s for s in subs if s.rule is None and s.admits(event)]
        if not plain and not alerts:
            return []
        extras = self.ledger.extras(record.projectId, facts.ended_ms, (partition, key, stored.cost))
        created = now_ms(self.clock)
        out = [
            payload.execution_notification(record.projectId, event, s.record, extras, created)
            for s in plain
        ]
        return out + self.alert_records(partition, record.projectId, alerts, event, extras)

    async def on_tick_record(self, message: Message) -> None:
        """Admit a tick; apply it now if its partition's executions are processed far enough."""
        tick = decode(_tick, message.value)
        tick = msgspec.structs.replace(tick, partition=message.partition)
        due = await self.gate.admit(tick)
        if due is not None:
            await self.on_tick(message, due.atMs, due.executionsEnd)

    async def on_tick(self, message: Message, at_ms: int, end: int | None = None) -> None:
        """Let event time reach `at_ms` for every watched workflow of the partition; `end` is
        the offset of `executions` the tick follows (which silence versions and acknowledgements
        apply). Silences over for SILENCE_MEMORY_MS before `at_ms` are forgotten first."""
        partition = message.partition
        self.views.forget_silences(partition, at_ms - SILENCE_MEMORY_MS)
        for key in self.views.keys(partition):
            project, workflow = split_key(key)
            covering = self.views.covering(partition, project, workflow, at_ms)
            # With silences, any rule's muted episode may be owed its notification.
            silences = bool(self.views.project_silences(partition, project, end))
            subs = [s for s in covering if s.timed or (silences and s.rule is not None)]
            if subs:
                self.tick_workflow(message, key, subs, at_ms, end)

    def tick_workflow(
        self, message: Message, key: bytes, subs: list[SubView], at_ms: int, end: int | None = None
    ) -> None:
        """Run the time-driven rules of one workflow; store it only when a watch changed."""
        partition, (project, workflow) = message.partition, split_key(key)
        stored = self.ledger.load(key, workflow)
        before = _encode(stored.state.watches)
        rules = [s.rule for s in subs if s.rule is not None]
        cooldown = self.settings.alert_cooldown_s
        muted = self.muted(partition, project, workflow, end)
        acked = self.acked(partition, end)
        stored.state, all_alerts = on_tick(stored.state, rules, at_ms, cooldown, muted, acked)
        alerts = self.notifying(project, all_alerts)
        out: list[NotificationRecord] = []
        if alerts:
            extras = self.ledger.extras(project, at_ms)
            out = self.alert_records(partition, project, alerts, None, extras)
        events = [payload.alert_event(project, a) for a in all_alerts]
        self.batch.add(message, out, events)
        if all_alerts or _encode(stored.state.watches) != before:
            self.ledger.store(partition, key, stored)

    def notifying(self, project: str, alerts: list[Alert]) -> list[Alert]:
        """The alerts to send: those that notify and no silence takes; the silenced ones are
        logged and counted instead."""
        for alert in alerts:
            if alert.silenced and alert.notify:
                SILENCED.labels(alert.kind).inc()
                log.info("alerts.silenced", id=alert.id, kind=alert.kind, rule=alert.rule,
                         project=project, subscription=alert.notificationId,
                         workflow=alert.workflowId, at_ms=alert.atMs)  # fmt: skip
        return [a for a in alerts if a.notify and not a.silenced]

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


def _by_workflow(events: list[ExecutionCompleted]) -> dict[str, list[ExecutionCompleted]]:
    """Events grouped by workflow, in order (a record normally holds one workflow's)."""
    groups: dict[str, list[ExecutionCompleted]] = defaultdict(list)
    for event in events:
        groups[event.workflowId].append(event)
    return groups
