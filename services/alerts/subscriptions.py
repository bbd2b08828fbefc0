"""Subscription changes on a partition: compacted `subscriptions` records and their markers on
`executions`, stored, indexed, and turned into rules armed or disarmed per workflow; a disarm
ends the rule's open episodes with a resolve that is recorded in `alert-events` but notifies
nobody, so that no alert stays firing for a subscription that no longer watches it.

Which record applies a change first (the marker on `executions` or the compacted record) sets
that resolve's time; the other finds the watch gone and records nothing. A replay after a crash
may let the other one come first: the resolve then has the same alert id and version, and a time
from the other record of the same change."""

import msgspec

from schemas.alerts import AlertEvent
from schemas.destinations import RecordDecoder
from schemas.events import topic_key
from schemas.notifications import SubscriptionRecord
from services.alerts.batch import Batch
from services.alerts.ledger import Ledger
from services.alerts.payload import alert_event
from services.alerts.records import Message, decode
from services.alerts.rules import arm, disarm, withdraw
from services.alerts.views import SubView, Views, partition_of, split_key

_subscription = RecordDecoder(SubscriptionRecord)
_encode = msgspec.json.Encoder().encode


class Subscriptions:
    """Applies subscription changes to a partition's table and views, and rearms the rules."""

    def __init__(self, partitions: int, batch: Batch, views: Views, ledger: Ledger) -> None:
        self.partitions = partitions
        self.batch = batch
        self.tables = batch.tables
        self.views = views
        self.ledger = ledger

    def on_record(self, message: Message) -> None:
        """Apply a record of the compacted `subscriptions` topic to its partition."""
        key = message.key or b""
        sub_id, _, _ = key.decode().rpartition("/")
        record = None if message.value is None else decode(_subscription, message.value)
        self.apply(message, sub_id, record)

    def on_marker(self, message: Message, record: SubscriptionRecord) -> None:
        """Apply a subscription marker on `executions`: the subscription begins at its offset."""
        marked = msgspec.structs.replace(record, markerOffset=message.offset)
        self.apply(message, record.id, marked)

    def apply(self, message: Message, sub_id: str, record: SubscriptionRecord | None) -> None:
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
        self.rearm(message, previous, current, _armed_ms(record, message))

    def rearm(
        self,
        message: Message,
        previous: SubView | None,
        current: SubView | None,
        at_ms: int,
    ) -> None:
        """Arm the rule for the workflows it now watches here; disarm it for the others, ending
        their open episodes with a recorded resolve (see `rules.withdraw`)."""
        partition = message.partition
        view = current or previous
        if view is None or (view.rule is None and (previous is None or previous.rule is None)):
            return
        reset = previous is None or current is None or _rule_changed(previous, current)
        ending = (previous or view).rule  # the rule whose episodes a disarm ends
        events: list[AlertEvent] = []
        for key in self.watched_keys(partition, view):
            workflow = split_key(key)[1]
            stored = self.ledger.load(key, workflow)
            before = _encode(stored.state.watches)
            why = _why_unwatched(current, workflow, reset)
            if why is not None and ending is not None:
                alerts = withdraw(stored.state, ending, at_ms, why)
                events += [alert_event(view.record.projectId, a) for a in alerts]
            elif why is not None:
                disarm(stored.state, view.record.id)
            if current is not None and current.rule is not None and current.covers(workflow):
                arm(stored.state, current.record.id, at_ms)
            if _encode(stored.state.watches) != before:
                self.ledger.store(partition, key, stored)
        self.batch.add(message, [], events)

    def watched_keys(self, partition: int, view: SubView) -> set[bytes]:
        """State keys on this partition the subscription may concern: its project's workflows
        seen here plus the ones it lists."""
        project = view.record.projectId
        keys = self.views.project_keys(partition, project)
        listed = (topic_key(project, w) for w in view.record.workflowIds)
        keys.update(k for k in listed if partition_of(k, self.partitions) == partition)
        return keys


def _armed_ms(record: SubscriptionRecord | None, message: Message) -> int:
    """When a rule starts watching: its creation, or the time of the version that changed it."""
    if record is not None and record.version == 1:
        return record.createdAtMs
    return round(message.timestamp * 1000)


def _why_unwatched(current: SubView | None, workflow: str, reset: bool) -> str | None:
    """Why the subscription's rule stops watching `workflow` (None: it keeps watching)."""
    if current is None:
        return "the subscription was deleted."
    if current.rule is None:
        return "the subscription no longer has an alert rule."
    if not current.record.active:
        return "the subscription was turned off."
    if reset:
        return "the subscription's alert rule was changed."
    if not current.covers(workflow):
        return "the subscription no longer watches this workflow."
    return None


def _rule_changed(previous: SubView, current: SubView) -> bool:
    return previous.record.alertConfig != current.record.alertConfig or not previous.record.active
