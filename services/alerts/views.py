"""In-memory indexes of the engine's tables over the partitions a worker holds.

`SubView` is a subscription prepared for matching; `Views` index subscriptions, workflow state
keys and costs by partition and project, so that a record's handling reads no table to find
what concerns it.
"""

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal

import msgspec
import structlog
from aiokafka.partitioner import murmur2

from schemas.alerts import AckRecord
from schemas.destinations import RecordDecoder
from schemas.events import ExecutionCompleted
from schemas.notifications import SubscriptionRecord
from schemas.silences import SilenceRecord
from services.alerts.records import decode
from services.alerts.state import Subscription
from services.alerts.tables import ProjectCost, decode_cost, decode_head
from services.common.silences import end_ms

log = structlog.get_logger(__name__)

TIMED_RULES = frozenset({"failure_rate", "error_count", "no_activity"})
MAX_WORKFLOWS = 10_000  # workflow states per project and partition; the least recent go first

_subscription = RecordDecoder(SubscriptionRecord)
_silence = RecordDecoder(SilenceRecord)
_ack = msgspec.json.Decoder(AckRecord)


def broadcast_id(key: bytes | None) -> str:
    """The id in a key `<id>/<partition>` of a record broadcast to every partition."""
    return (key or b"").decode(errors="replace").rpartition("/")[0]


def _preloading(
    partition: int,
    apply: Callable[[int, bytes | None, bytes | None], None],
    key: bytes,
    value: bytes | None,
) -> None:
    try:
        apply(partition, key, value)
    except Exception as exc:  # whatever it is, it must not stop the read-ahead
        log.warning("alerts.preload_skipped", partition=partition, error=repr(exc)[:200])


def _earliest(a: int | None, b: int | None) -> int | None:
    """The lower of two marker offsets, either of which may be unknown."""
    return b if a is None else a if b is None else min(a, b)


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


class Views:
    """In-memory indexes of the tables over the partitions this worker holds.

    Workflow keys are kept per (partition, project) in the order they were last written, at most
    `max_workflows` of them: `add_key` returns the least recent ones beyond that for eviction.
    `starts` holds, per partition, the offset of the earliest marker of each subscription on
    that partition of `executions` (see `covering`). `silences` holds every version of each
    silence seen on a partition, each with the offset of its marker there when known (see
    `project_silences`). `acks` holds each alert's acknowledgement seen on a partition, with
    the offset of its marker there when known (see `acknowledged`).
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
        # partition -> project -> silence id -> its versions seen on that partition, by version
        self.silences: dict[int, dict[str, dict[str, list[SilenceRecord]]]] = defaultdict(
            lambda: defaultdict(dict)
        )
        # partition -> alert id -> its acknowledgement seen on that partition
        self.acks: dict[int, dict[str, AckRecord]] = defaultdict(dict)

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
        self._reindex(partition, view.record.id, view.record.projectId, view)
        return True

    def _reindex(
        self, partition: int, sub_id: str, project: str, view: SubView | None = None
    ) -> None:
        """Put (None: drop) one subscription in the project index of a partition, in place: a
        change of one subscription costs the size of its project, not of the partition."""
        index = self._by_project.get(partition)
        if index is None:  # built when first asked for
            return
        current = index.get(project, [])
        at = next((i for i, v in enumerate(current) if v.record.id == sub_id), None)
        views = [v for v in current if v.record.id != sub_id]
        if view is not None:
            views.insert(len(views) if at is None else at, view)
        index[project] = views

    def note_start(self, partition: int, sub_id: str, offset: int | None) -> int | None:
        """Keep the earliest known marker offset of a subscription on a partition."""
        starts = self.starts[partition]
        if offset is not None and (sub_id not in starts or offset < starts[sub_id]):
            starts[sub_id] = offset
        return starts.get(sub_id)

    def preload(self, partition: int, key: bytes, value: bytes | None) -> None:
        """Take in a record read straight from the `subscriptions` topic; one that is not a
        subscription is skipped here (the stream dead-letters it when it gets there)."""
        _preloading(partition, self._apply_sub, key, value)

    def _apply_sub(self, partition: int, key: bytes | None, value: bytes | None) -> None:
        if value is None:
            self.drop_sub(partition, broadcast_id(key))
        else:
            self.put_sub(partition, SubView.of(_subscription.decode(value)))

    def put_silence(self, partition: int, record: SilenceRecord) -> None:
        """Add a version of a silence; one already known keeps the earliest marker offset
        either record brought (the marker in the stream, or the compacted record)."""
        versions = self.silences[partition][record.projectId].setdefault(record.id, [])
        for i, known in enumerate(versions):
            if known.version == record.version:
                marker = _earliest(known.markerOffset, record.markerOffset)
                versions[i] = msgspec.structs.replace(record, markerOffset=marker)
                return
        versions.append(record)
        versions.sort(key=lambda v: v.version)

    def drop_silence(self, partition: int, silence_id: str) -> None:
        """Forget a silence (its tombstone)."""
        for by_id in self.silences.get(partition, {}).values():
            by_id.pop(silence_id, None)

    def forget_silences(self, partition: int, before_ms: int) -> int:
        """Forget the silences of a partition whose every version was over before `before_ms`
        (see `Engine.on_tick`); how many."""
        forgotten = 0
        for by_id in self.silences.get(partition, {}).values():
            over = [i for i, versions in by_id.items() if _over_before(versions, before_ms)]
            for silence_id in over:
                del by_id[silence_id]
            forgotten += len(over)
        return forgotten

    def project_silences(
        self, partition: int, project: str, offset: int | None = None
    ) -> list[SilenceRecord]:
        """The silences of a project as they stood, on a partition, for an input.

        A version of a silence applies to the execution records after its marker on that
        partition of `executions` (`offset` is the record's), the same whichever topic it was
        learnt from first; a tick's `offset` is the end of the executions it follows. Each
        silence is taken in its newest version that applies; a version without a known marker
        (written before markers) applies to everything, as does every version when `offset` is
        None.
        """
        by_project = self.silences.get(partition)
        by_id = by_project.get(project) if by_project else None
        if not by_id:
            return []
        out = []
        for versions in by_id.values():
            for version in reversed(versions):
                marker = version.markerOffset
                if offset is None or marker is None or marker < offset:
                    out.append(version)
                    break
        return out

    def apply_silence(self, partition: int, key: bytes | None, value: bytes | None) -> None:
        """Take in a record of the `silences` topic (a version, or a tombstone); raises
        PoisonRecord for a value that is not a silence."""
        if value is None:
            self.drop_silence(partition, broadcast_id(key))
        else:
            self.put_silence(partition, decode(_silence, value))

    def preload_silence(self, partition: int, key: bytes, value: bytes | None) -> None:
        """Take in a record read straight from the `silences` topic (see `preload`)."""
        _preloading(partition, self.apply_silence, key, value)

    def put_ack(self, partition: int, record: AckRecord) -> None:
        """Keep an acknowledgement: the earliest time and the earliest marker offset that its
        records brought (the marker in the stream, the compacted record, one published twice)."""
        known = self.acks[partition].get(record.alertId)
        if known is not None:
            marker = _earliest(known.markerOffset, record.markerOffset)
            earlier = min(known, record, key=lambda r: r.acknowledgedAtMs)
            record = msgspec.structs.replace(earlier, markerOffset=marker)
        self.acks[partition][record.alertId] = record

    def drop_ack(self, partition: int, alert_id: str) -> None:
        """Forget an acknowledgement (its tombstone)."""
        self.acks.get(partition, {}).pop(alert_id, None)

    def ack_of(self, partition: int, alert_id: str) -> AckRecord | None:
        """The acknowledgement of an alert as seen on a partition."""
        by_id = self.acks.get(partition)
        return by_id.get(alert_id) if by_id else None

    def acknowledged(
        self, partition: int, alert_id: str, at_ms: int, offset: int | None = None
    ) -> bool:
        """Whether an alert was acknowledged, on a partition, for an input.

        An acknowledgement applies to the execution records after its marker on that partition
        of `executions` (`offset` is the record's; a tick's is the end of the executions it
        follows), the same whichever topic it was learnt from first. Without a known marker (a
        record written before markers, or a tick that names no offset) it applies to triggers
        at or after the time it was made (`at_ms`, event time).
        """
        ack = self.ack_of(partition, alert_id)
        if ack is None:
            return False
        if offset is not None and ack.markerOffset is not None:
            return ack.markerOffset < offset
        return ack.acknowledgedAtMs <= at_ms

    def apply_ack(self, partition: int, key: bytes | None, value: bytes | None) -> None:
        """Take in a record of the `alert-acks` topic (an acknowledgement, or a tombstone);
        raises PoisonRecord for a value that is not one."""
        if value is None:
            self.drop_ack(partition, broadcast_id(key))
        else:
            self.put_ack(partition, decode(_ack, value))

    def preload_ack(self, partition: int, key: bytes, value: bytes | None) -> None:
        """Take in a record read straight from the `alert-acks` topic (see `preload`)."""
        _preloading(partition, self.apply_ack, key, value)

    def drop_sub(self, partition: int, sub_id: str) -> None:
        """Forget a subscription."""
        known = self.subs[partition].pop(sub_id, None)
        self.starts[partition].pop(sub_id, None)
        if known is not None:
            self._reindex(partition, sub_id, known.record.projectId)

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
            indexes = (self._keys, self.costs, self.wf_costs, self.subs, self.starts, self.silences)
            for index in (*indexes, self.acks, self._by_project):
                index.pop(partition, None)

    def index_state(self, partition: int, key: bytes, value: bytes | None) -> None:
        """Index a stored workflow state (None: deleted) under its partition, with its plan."""
        if value is None:
            self.discard_key(partition, key)
        else:
            self.add_key(partition, key)
            head = decode_head(value)
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


def _over_before(versions: list[SilenceRecord], before_ms: int) -> bool:
    """Whether every version of a silence ended before `before_ms`."""
    ends = [end_ms(v) for v in versions]
    return bool(ends) and all(end is not None and end < before_ms for end in ends)
