"""What becomes of a record: the dispatcher's decisions, pure (no I/O, no clock of its own).

`decide` looks at a partition's head record, the time, and what the journal and the lanes know,
and returns the actions that handle it; `conclude` turns an attempt that was made into the
actions that make it durable. The loop (`loop`) carries the actions out in order. A list either
keeps the record waiting (`Wait`), hands it to its lane (`Claim`, then `Deliver`: the lane's job
concludes it later), or ends in `Finish`, after which the record's offset may be committed.

Both functions are total: whatever a record makes raise ends as a `DeadLetter`.
"""

import random
from dataclasses import dataclass
from typing import Literal, Protocol

import msgspec
from msgspec import Struct

from schemas.deliveries import DeliveryAttempt, Outcome
from schemas.notifications import NotificationRecord
from services.dispatcher import retry
from services.dispatcher.channels.base import Result
from services.dispatcher.journal import STARTED, Journal, Key
from services.dispatcher.progress import Room
from services.dispatcher.records import attempt_record, lane_of

INTERRUPTED = "The dispatcher stopped during this attempt; the receiver may have received it."


class Head(Struct, frozen=True):
    """A partition's next record as decisions see it."""

    topic: str
    timestamp_ms: int  # the broker's; 0 or less when it has none
    record: NotificationRecord | Exception  # why it is not a notification, when it is not


class Attempted(Struct, frozen=True):
    """An attempt that was made: the notification as sent, its result, when and how long."""

    record: NotificationRecord
    result: Result
    started_ms: int
    duration_ms: int


class Wait(Struct, frozen=True):
    """The record stays at the head: until `until_ms` (a tier head not yet due), or, when None,
    until its lane has room (a busy receiver)."""

    until_ms: int | None = None


class Deliver(Struct, frozen=True):
    """Hand the attempt to its lane (claimed first)."""

    record: NotificationRecord
    lane: str


class Claim(Struct, frozen=True):
    """Take the attempt on, so that another copy of its record is skipped."""

    key: Key


class Schedule(Struct, frozen=True):
    """Put a notification on a retry tier: its next attempt (`retry`), an attempt whose lane has
    stalled (`defer`), or one due later than its tier holds it (`hop`)."""

    record: NotificationRecord
    tier: int
    reason: Literal["retry", "defer", "hop"]


class Log(Struct, frozen=True):
    """Put an attempt's end on `delivery-log` (and in the journal)."""

    entry: DeliveryAttempt


class DeadLetter(Struct, frozen=True):
    """Send the record to its topic's dead letters, with why."""

    error: BaseException


class Finish(Struct, frozen=True):
    """The record's work is done: its offset may be committed."""


Action = Wait | Deliver | Claim | Schedule | Log | DeadLetter | Finish


class Lanes(Protocol):
    """How much room a destination's lane has (`progress.Lanes`)."""

    def room(self, lane: str) -> Room:
        """Whether `lane` takes a job now, is busy, or has stalled."""


@dataclass(frozen=True)
class State:
    """What decisions read besides the record and the time."""

    schedule: retry.Schedule
    journal: Journal
    lanes: Lanes
    rng: random.Random  # the retry delays' jitter


def decide(head: Head, now_ms: int, state: State) -> list[Action]:
    """The actions that handle a partition's head record at `now_ms`."""
    try:
        return _decide(head, now_ms, state)
    except Exception as exc:  # whatever a record makes raise (a bad URL, an odd attempt number)
        return [DeadLetter(exc), Finish()]


def conclude(attempted: Attempted, now_ms: int, state: State) -> list[Action]:
    """The actions that make an attempt durable: its end on the log, then its retry, if any."""
    try:
        return _conclude(attempted, now_ms, state)
    except Exception as exc:  # a destination the log cannot show (a port out of range)
        return [DeadLetter(exc), Finish()]


def _decide(head: Head, now_ms: int, state: State) -> list[Action]:
    record = head.record
    if isinstance(record, Exception):
        return [DeadLetter(record), Finish()]
    tier = retry.tier_number(head.topic)
    if tier is not None and record.dueAtMs > now_ms:
        return _early(head, record, tier, now_ms, state.schedule)
    lane = lane_of(record)
    key = (record.deliveryId, record.round, record.attempt)
    if key in state.journal.claimed:  # a second copy of a record being worked on
        return [Finish()]
    done = state.journal.done.get(key)
    if done is not None and done.outcome == STARTED:  # in flight when a process stopped
        interrupted = Result(delivered=False, retryable=True, error=INTERRUPTED)
        return [Claim(key), *conclude(Attempted(record, interrupted, now_ms, 0), now_ms, state)]
    if done is not None:  # made before a restart; its retry may not be on a tier yet
        due_ms = done.next_attempt_ms if done.outcome == "retrying" else None
        again = [] if due_ms is None else [_retry(record, due_ms, now_ms, state.schedule)]
        return [Claim(key), *again, Finish()]
    return _by_room(record, lane, key, state.lanes.room(lane), now_ms, state.schedule)


def _conclude(attempted: Attempted, now_ms: int, state: State) -> list[Action]:
    record, result = attempted.record, attempted.result
    outcome: Outcome = "delivered" if result.delivered else "failed"
    next_ms = None
    if not result.delivered and result.retryable:
        after = result.retry_after_s
        delay = retry.next_delay_s(state.schedule, record.attempt, after, state.rng)
        if delay is not None:
            outcome = "retrying"
            next_ms = now_ms + int(delay * 1000)
    entry = attempt_record(
        record, result, outcome, attempted.started_ms, attempted.duration_ms, next_ms
    )
    again = [] if next_ms is None else [_retry(record, next_ms, now_ms, state.schedule)]
    return [Log(entry), *again, Finish()]


def _early(
    head: Head, record: NotificationRecord, tier: int, now_ms: int, schedule: retry.Schedule
) -> list[Action]:
    """A tier record not yet due: it waits for its tier's release, then hops to the tier for
    the time that remains (a long Retry-After)."""
    enqueued_ms = head.timestamp_ms if head.timestamp_ms > 0 else now_ms
    release_ms = retry.release_at_ms(schedule, tier, enqueued_ms, record.dueAtMs)
    if release_ms > now_ms:
        return [Wait(release_ms)]
    hop = retry.tier_for(schedule, (record.dueAtMs - now_ms) / 1000)
    return [Schedule(record, hop, "hop"), Finish()]


def _by_room(
    record: NotificationRecord,
    lane: str,
    key: Key,
    room: Room,
    now_ms: int,
    schedule: retry.Schedule,
) -> list[Action]:
    """A new attempt goes to its lane, waits for a busy one, or leaves a stalled one: it then
    waits on the first tier instead of here, so the partition goes on for everyone else."""
    if room == "free":
        return [Claim(key), Deliver(record, lane)]
    if room == "busy":
        return [Wait()]
    due_ms = now_ms + int(schedule.tier_delays()[0] * 1000)
    return [Schedule(msgspec.structs.replace(record, dueAtMs=due_ms), 1, "defer"), Finish()]


def _retry(
    record: NotificationRecord, due_ms: int, now_ms: int, schedule: retry.Schedule
) -> Schedule:
    """The next attempt, due at `due_ms`, on the tier for the wait that is left."""
    again = msgspec.structs.replace(record, attempt=record.attempt + 1, dueAtMs=due_ms)
    return Schedule(again, retry.tier_for(schedule, max(0.0, (due_ms - now_ms) / 1000)), "retry")
