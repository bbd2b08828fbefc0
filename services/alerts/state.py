"""Per-workflow alert state: plain msgspec Structs that a table stores, and their bookkeeping.

One `WorkflowState` per workflow holds what every rule reads (execution buckets, the failure
streak, seen execution ids, event-time marks) and one `Watch` per subscription (arming time,
cooldown, current episode). Everything is bounded, so a value never grows without limit.

Buckets. The latest FINE_MINUTES (the default window of 24 hours and the partial minute at its
far edge) and up to an hour more are kept a bucket per minute; older ones, up to the longest
window (168 hours), a bucket per hour. A window therefore sums whole minutes as far back as 24
hours, and whole hours beyond: a window longer than that counts every execution of the hour its
far edge falls in. A workflow that runs every minute keeps some 1,650 buckets instead of 10,080.
They are kept as columns (`Counts`): a window's sums are sums of list slices, and a value decodes
into four lists of integers rather than an object per bucket.
"""

import hashlib
from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterable
from decimal import Decimal
from typing import NamedTuple

from msgspec import Struct, field

from schemas.alerts import AlertConfig

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
HORIZON_MINUTES = 168 * 60 + 1  # the longest window plus the partial minute at its far edge
FINE_MINUTES = 24 * 60 + 1  # kept a bucket per minute: the default window and its far edge
HOUR_MINUTES = 60
SEEN_LIMIT = 1000
STREAK_LIMIT = 100  # the largest consecutiveFailures; a longer streak fires every rule alike
DIGEST_BYTES = 8  # a seen execution id: 8 bytes of BLAKE2b instead of the whole id


class ExecutionFacts(Struct, frozen=True):
    """What the rules need from one completed execution; times are event time in ms."""

    execution_id: str
    workflow_id: str
    ended_ms: int
    failed: bool
    duration_ms: int
    cost: Decimal | None = None


class Subscription(Struct, frozen=True):
    """An alert subscription as the rules see it; `armed_ms` is when it started watching (its
    creation), the arming time of a watch it gets only when an input first concerns it."""

    id: str
    config: AlertConfig
    armed_ms: int = 0


class Bucket(Struct, array_like=True):
    """Executions that ended within one minute (`minute` = epoch ms // 60 000): a row of the
    buckets of a state written before `Counts` (see `_counts`)."""

    minute: int
    total: int = 0
    errors: int = 0
    duration_ms: int = 0


class Counts(Struct, array_like=True):
    """Executions by bucket, as columns: bucket i began at `minutes[i]` (epoch ms // 60 000) and
    holds that minute, or the hour that begins there when that is before its state's
    `hourly_before`; `minutes` ascends."""

    minutes: list[int] = []
    totals: list[int] = []
    errors: list[int] = []
    durations: list[int] = []

    def columns(self) -> tuple[list[int], list[int], list[int], list[int]]:
        """The four columns, in order."""
        return self.minutes, self.totals, self.errors, self.durations


class Episode(Struct):
    """A stretch during which a rule's condition holds; `key` names its first trigger.

    `notified`: a notification of it was delivered. `silenced_ms`: when a silence last muted
    one of its notifications (None once one is delivered), with that notification's figures,
    so that one can follow when the silence ends.

    The alert it is: `id` (the episode's `alr_` id, from its first trigger), `fired_ms` (event
    time of its first event, delivered or muted), `count` (notifications delivered), `seq`
    (events recorded: delivered, muted or resolved), `notified_ms` (event time of the latest
    delivered notification) and `execution_id` (the execution that
    triggered it, if one did). Episodes stored before these fields had them get them lazily.
    """

    key: str
    notified: bool = False
    silenced_ms: int | None = None
    reason: str | None = None
    observed: Decimal | None = None
    threshold: Decimal | None = None
    id: str = ""
    fired_ms: int | None = None
    count: int = 0
    seq: int = 0
    execution_id: str | None = None
    notified_ms: int | None = None

    @property
    def silenced(self) -> bool:
        """Whether its latest notification was muted by a silence."""
        return self.silenced_ms is not None


class Watch(Struct):
    """One subscription's state for this workflow: arming time, cooldown and episode."""

    armed_ms: int
    last_fired_ms: int | None = None
    episode: Episode | None = None


class WorkflowState(Struct):
    """Everything the rules remember about one workflow."""

    workflow_id: str
    now_ms: int | None = None
    first_ms: int | None = None
    last_ms: int | None = None
    last_success_ms: int | None = None
    failures_ms: list[int] = []
    # The earlier form of `seen_digests`, whole ids: a state written with it keeps its ids here
    # until its next execution moves them over (`_remember`).
    seen: dict[str, None] = {}
    # The earlier form of `counts`, a row per minute: moved over at its first use (`_counts`).
    buckets: list[Bucket] = []
    watches: dict[str, Watch] = {}
    # The latest SEEN_LIMIT execution ids, as 8-byte digests laid end to end: the state is
    # encoded and written for every execution (and its batch's last value to the store and its
    # changelog), and whole ids made a busy workflow's value some 45 KB where these take 11.
    seen_digests: bytes = b""
    # The minute (on an hour) before which each bucket holds a whole hour; None in a state
    # written before buckets were merged by the hour, whose buckets are all minutes (`advance`
    # merges them).
    hourly_before: int | None = None
    counts: Counts = field(default_factory=Counts)


class Totals(NamedTuple):
    """Sums over a run of buckets."""

    total: int
    errors: int
    duration_ms: int


def advance(state: WorkflowState, event_ms: int) -> int:
    """Move the workflow's event-time clock forward (never back), merge the buckets that left
    the per-minute span into hours, and drop those older than the longest window."""
    now = event_ms if state.now_ms is None else max(state.now_ms, event_ms)
    state.now_ms = now
    counts = _counts(state)
    minute = now // MINUTE_MS
    edge = _hour_of(minute - FINE_MINUTES)
    if state.hourly_before is None or edge > state.hourly_before:
        _merge_hours(counts, state.hourly_before, edge)
        state.hourly_before = edge
    expired = bisect_left(counts.minutes, _hour_of(minute - HORIZON_MINUTES))
    if expired:
        for column in counts.columns():
            del column[:expired]
    return now


def has_seen(state: WorkflowState, execution_id: str, digest: bytes | None = None) -> bool:
    """Whether the state counted this execution already (among the latest SEEN_LIMIT);
    `digest`: its `seen_digest`, when the caller has it."""
    digest = digest or seen_digest(execution_id)
    return digests_have(state.seen_digests, digest) or execution_id in state.seen


def record(state: WorkflowState, facts: ExecutionFacts) -> bool:
    """Count a new execution into the state; False (and no change) for a duplicate."""
    digest = seen_digest(facts.execution_id)
    if has_seen(state, facts.execution_id, digest):
        return False
    _remember(state, digest)
    _mark_times(state, facts.ended_ms)
    _track_streak(state, facts)
    _add_to_bucket(state, facts)
    return True


def window_totals(state: WorkflowState, end_ms: int, window_ms: int) -> Totals:
    """Sums of the buckets that overlap [end_ms - window_ms, end_ms]: whole minutes, and whole
    hours before the state's `hourly_before`."""
    far = (end_ms - window_ms) // MINUTE_MS
    if state.hourly_before is not None and far < state.hourly_before:
        far = _hour_of(far)
    counts = _counts(state)
    low = bisect_left(counts.minutes, far)
    high = bisect_right(counts.minutes, end_ms // MINUTE_MS)
    return Totals(
        sum(counts.totals[low:high]), sum(counts.errors[low:high]), sum(counts.durations[low:high])
    )


def streak(state: WorkflowState) -> int:
    """Failures that ended after the latest success, by event time (capped at STREAK_LIMIT)."""
    return len(state.failures_ms)


def _counts(state: WorkflowState) -> Counts:
    """The state's buckets, moved over from the earlier form (a row per minute) if need be."""
    if state.buckets:
        rows, state.buckets = state.buckets, []
        state.counts = Counts(
            [b.minute for b in rows],
            [b.total for b in rows],
            [b.errors for b in rows],
            [b.duration_ms for b in rows],
        )
    return state.counts


def _hour_of(minute: int) -> int:
    """The first minute of the hour `minute` falls in."""
    return minute - minute % HOUR_MINUTES


def _merge_hours(counts: Counts, since: int | None, until: int) -> None:
    """Merge the minute buckets from `since` (from the first when None) to `until` (on hours)
    into a bucket per hour, in place."""
    minutes = counts.minutes
    start = 0 if since is None else bisect_left(minutes, since)
    stop = bisect_left(minutes, until)
    if start == stop:
        return
    merged = Counts()
    for at in range(start, stop):
        hour = _hour_of(minutes[at])
        if not merged.minutes or merged.minutes[-1] != hour:
            for column, first in zip(merged.columns(), (hour, 0, 0, 0), strict=True):
                column.append(first)
        merged.totals[-1] += counts.totals[at]
        merged.errors[-1] += counts.errors[at]
        merged.durations[-1] += counts.durations[at]
    for column, values in zip(counts.columns(), merged.columns(), strict=True):
        column[start:stop] = values


def _remember(state: WorkflowState, digest: bytes) -> None:
    if state.seen:  # written with whole ids: they become digests, oldest first
        state.seen_digests = digests_add(state.seen_digests, digests_of(state.seen))
        state.seen = {}
    state.seen_digests = digests_add(state.seen_digests, digest)


def seen_digest(execution_id: str) -> bytes:
    """The fixed-size digest a project's cost row remembers an execution id by."""
    return hashlib.blake2b(execution_id.encode(), digest_size=DIGEST_BYTES).digest()


def digests_have(seen: bytes, digest: bytes) -> bool:
    """Whether `seen` (digests laid end to end) holds `digest` at a digest boundary."""
    at = seen.find(digest)
    while at != -1:
        if at % DIGEST_BYTES == 0:
            return True
        at = seen.find(digest, at + 1)
    return False


def digests_add(seen: bytes, digest: bytes) -> bytes:
    """`seen` with `digest` (or several laid end to end) appended, keeping the latest
    SEEN_LIMIT."""
    return (seen + digest)[-SEEN_LIMIT * DIGEST_BYTES :]


def digests_of(execution_ids: Iterable[str]) -> bytes:
    """The digests of ids kept whole (the earlier format), in their order: the latest
    SEEN_LIMIT."""
    return digests_add(b"", b"".join(map(seen_digest, execution_ids)))


def _mark_times(state: WorkflowState, ended_ms: int) -> None:
    state.first_ms = ended_ms if state.first_ms is None else min(state.first_ms, ended_ms)
    state.last_ms = ended_ms if state.last_ms is None else max(state.last_ms, ended_ms)


def _track_streak(state: WorkflowState, facts: ExecutionFacts) -> None:
    success = state.last_success_ms
    if facts.failed:
        if success is None or facts.ended_ms > success:
            insort(state.failures_ms, facts.ended_ms)
            del state.failures_ms[:-STREAK_LIMIT]
    elif success is None or facts.ended_ms > success:
        state.last_success_ms = facts.ended_ms
        del state.failures_ms[: bisect_right(state.failures_ms, facts.ended_ms)]


def _add_to_bucket(state: WorkflowState, facts: ExecutionFacts) -> None:
    minute = facts.ended_ms // MINUTE_MS
    if state.hourly_before is not None and minute < state.hourly_before:
        minute = _hour_of(minute)  # a late execution: into its hour's bucket
    if state.now_ms is not None and minute < _hour_of(state.now_ms // MINUTE_MS - HORIZON_MINUTES):
        return  # older than any window can reach
    counts = _counts(state)
    at = bisect_left(counts.minutes, minute)
    if at == len(counts.minutes) or counts.minutes[at] != minute:
        for column, first in zip(counts.columns(), (minute, 0, 0, 0), strict=True):
            column.insert(at, first)
    counts.totals[at] += 1
    counts.errors[at] += int(facts.failed)
    counts.durations[at] += facts.duration_ms
