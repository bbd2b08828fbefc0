"""The dispatcher's poll loop: it reads records, asks `decision` what becomes of each, and
carries the actions out.

The loop never waits on a receiver: attempts run in their lanes (`progress.Lanes`) and write
their ends behind. A partition whose head must wait (a busy lane, a tier head not yet due) is
paused until it can go on, and is committed up to its highest contiguous finished record.
"""

import asyncio
import contextlib
import functools
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiokafka import ConsumerRebalanceListener
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata, TopicPartition
from prometheus_client import Counter

from schemas.deliveries import DeliveryAttempt
from schemas.notifications import NotificationRecord
from services.common.clock import Clock, now_ms
from services.common.kafka import REFUSED_RECORD_ERRORS, FetchWait
from services.dispatcher.broker import Consumer, Message
from services.dispatcher.decision import (
    Action,
    Claim,
    DeadLetter,
    Deliver,
    Finish,
    Head,
    Log,
    Schedule,
    State,
    Wait,
    conclude,
    decide,
)
from services.dispatcher.journal import Starts
from services.dispatcher.progress import Job, Lanes, Leave, OffsetTracker, Prepare
from services.dispatcher.publisher import Publisher
from services.dispatcher.records import decode
from services.dispatcher.sender import Sender

log = structlog.get_logger(__name__)

Write = Coroutine[Any, Any, None]

# The fetch wait while records come (see `FetchWait`): how late a record may be seen on the
# embedded broker, which answers a waiting fetch only when its wait is up.
FETCH_WAIT_MS = 25
ATTEMPTS = Counter("cc_dispatcher_attempts", "Delivery attempts", ["channel", "outcome"])
# A labelled child, looked up once per channel and outcome (`labels` takes a lock each time).
attempts_of = functools.cache(ATTEMPTS.labels)
DEFERRED = Counter("cc_dispatcher_deferred", "Attempts put off because their lane was full")


@dataclass
class Partition:
    """What the loop holds of one assigned partition."""

    tracker: OffsetTracker = field(default_factory=OffsetTracker)
    buffer: deque[tuple[Message, NotificationRecord | Exception]] = field(default_factory=deque)
    wake_at_ms: int = 0  # when a tier head falls due (clock time)

    def take(self, message: Message) -> None:
        """Hold a record read from the partition until it is handed on."""
        self.tracker.add(message.offset)
        self.buffer.append((message, decode(message.value)))


def _is_infrastructure(error: Exception) -> bool:
    """Whether an error is the broker's (waited for), not the record's (a dead letter)."""
    return isinstance(error, KafkaError) and not isinstance(error, REFUSED_RECORD_ERRORS)


def _writes(actions: list[Action]) -> bool:
    """Whether carrying actions out writes to the broker (and so may wait for it)."""
    return any(isinstance(a, Log | Schedule | DeadLetter) for a in actions)


def _is_deferral(actions: list[Action]) -> bool:
    """Whether actions put off an attempt whose lane stalled: those run beside the loop, since
    a stalled lane's records may be many and the partition must go on meanwhile."""
    return any(isinstance(a, Schedule) and a.reason == "defer" for a in actions)


class Loop:
    """Consumes `notifications` and the retry tiers with `consumer`, as decisions say."""

    def __init__(
        self,
        state: State,
        lanes: Lanes,
        consumer: Consumer,
        publisher: Publisher,
        sender: Sender,
        clock: Clock,
        recording: int,
    ) -> None:
        self.state = state  # its lanes are `lanes`, seen by decisions
        self.lanes = lanes
        self.consumer = consumer
        self.publisher = publisher
        self.sender = sender
        self.clock = clock
        self.starts = Starts(publisher.log_starts, clock)
        lanes.round_trip_s = lambda: self.starts.round_trip_s  # how far ahead jobs get ready
        self.fetch_wait = FetchWait(FETCH_WAIT_MS)
        self.parts: dict[TopicPartition, Partition] = {}
        # Cleared from a revocation until the next assignment has caught up with the journal:
        # records are read and held, and none is handed on.
        self.ready = asyncio.Event()
        self.ready.set()
        # Held while records are handed on: the group's coordinator revokes partitions from a
        # task of its own, which may come while the loop waits on a record's write.
        self._handing = asyncio.Lock()
        self._recording = asyncio.Semaphore(recording)
        self._background: set[asyncio.Task[None]] = set()

    async def run(self, stop: asyncio.Event, commit_interval_s: float) -> None:
        """Poll until `stop` is set, committing every `commit_interval_s`."""
        next_commit = 0.0
        while not stop.is_set():
            await self.poll()
            if time.monotonic() >= next_commit:
                await self.commit()
                next_commit = time.monotonic() + commit_interval_s

    async def poll(self) -> None:
        """Read what is there, hand it on, and pause the partitions that must wait."""
        wait_ms = self._poll_wait_ms()
        fetched = await self.consumer.getmany(timeout_ms=wait_ms, max_records=2000)
        self.fetch_wait.after_fetch(self.consumer, sum(map(len, fetched.values())))
        for tp, messages in fetched.items():
            part = self.parts.get(tp)
            if part is None:
                continue
            for message in messages:
                part.take(message)
        async with self._handing:
            for tp, part in list(self.parts.items()):
                if part.buffer and self.ready.is_set() and self.parts.get(tp) is part:
                    await self.pump(part)
        paused = self.consumer.paused()
        for tp, part in self.parts.items():
            blocked = bool(part.buffer)
            if blocked and tp not in paused:
                self.consumer.pause(tp)
            elif not blocked and tp in paused:
                self.consumer.resume(tp)

    async def hold(self) -> None:
        """Hand no more records on, once the one being handed on is (its writes included)."""
        self.ready.clear()
        async with self._handing:
            pass

    async def commit(self) -> None:
        """Commit each partition up to its highest contiguous finished record."""
        offsets = {}
        for tp, part in self.parts.items():
            offset = part.tracker.take_commit()
            if offset is not None:
                offsets[tp] = OffsetAndMetadata(offset, "")
        if offsets:
            await self.consumer.commit(offsets)

    async def drain(self, timeout_s: float) -> None:
        """Let running attempts and writes end, waiting at most `timeout_s` for each."""
        await self.lanes.drain(timeout_s)
        if self._background:
            await asyncio.wait(set(self._background), timeout=timeout_s)

    async def close(self) -> None:
        """Stop what still runs (its records stay unfinished: redone after a restart) and
        commit what has finished."""
        self.publisher.stopping = True
        await self.lanes.cancel()
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        with contextlib.suppress(KafkaError):
            await self.commit()

    def _poll_wait_ms(self) -> int:
        """Wait for records, but not past a tier head falling due."""
        wakes = [p.wake_at_ms for p in self.parts.values() if p.buffer and p.wake_at_ms]
        if not wakes:
            return 50
        return max(0, min(50, min(wakes) - now_ms(self.clock)))

    async def pump(self, part: Partition) -> None:
        """Hand the partition's buffered records on, in order, until one must wait or the
        partitions are about to change hands (`hold`)."""
        part.wake_at_ms = 0
        while part.buffer and self.ready.is_set():
            message, record = part.buffer[0]
            head = Head(message.topic, message.timestamp, record)
            actions = decide(head, now_ms(self.clock), self.state)
            if isinstance(actions[0], Wait):
                part.wake_at_ms = actions[0].until_ms or 0
                return
            part.buffer.popleft()
            if not _writes(actions):  # a claim and a hand-over, or a copy skipped
                for action in actions:
                    self._do(part, message, action)
            elif _is_deferral(actions):
                self._in_background(self._carry_out(part, message, actions))
            else:
                await self._carry_out(part, message, actions)

    async def _carry_out(
        self, part: Partition, message: Message, actions: list[Action], leave: Leave | None = None
    ) -> None:
        """Carry out a record's actions, in order, with at most `recording` records at it at
        once; a record that raises, or that the broker refuses (too large), is dead-lettered.

        A lane job passes `leave`: its slot goes to the next job only once its writes may
        begin, so a slow broker holds the lanes back rather than piling answered attempts up."""
        async with self._recording:
            if leave is not None:
                leave()
            try:
                for action in actions:
                    write = self._do(part, message, action)
                    if write is not None:
                        await write
            except Exception as exc:
                if self.publisher.stopping or _is_infrastructure(exc):
                    raise  # unfinished: redone after a restart
                await self.publisher.dead_letter(message, exc)
                part.tracker.finish(message.offset)

    def _do(self, part: Partition, message: Message, action: Action) -> Write | None:
        """Carry out one action for `message`: at once, or as the write it returns (awaited
        before the next action; most actions need none, and make no coroutine)."""
        match action:
            case Claim(key=key):
                self.state.journal.claim(key)
            case Deliver(record=record, lane=lane):
                taken = self.lanes.offer(lane, *self._job(part, message, record, lane))
                assert taken, "decided for a lane with room"
            case Log(entry=entry):
                return self._log(entry)
            case Schedule(record=record, tier=tier, reason=reason):
                if reason == "defer":
                    DEFERRED.inc()
                return self.publisher.schedule(record, tier)
            case DeadLetter(error=error):
                return self.publisher.dead_letter(message, error)
            case Finish():
                part.tracker.finish(message.offset)
            case Wait():
                pass  # the pump keeps a waiting record at its partition's head
        return None

    async def _log(self, entry: DeliveryAttempt) -> None:
        """Count an attempt's end, put it on `delivery-log`, then in the journal."""
        attempts_of(entry.notificationType, entry.outcome).inc()
        if entry.outcome != "delivered":
            log.info("dispatcher.attempt", delivery=entry.deliveryId, attempt=entry.attempt,
                     outcome=entry.outcome, status=entry.responseCode,
                     error=entry.error)  # fmt: skip
        await self.publisher.log(entry)
        self.state.journal.note(entry)

    def _job(
        self, part: Partition, message: Message, record: NotificationRecord, lane: str
    ) -> tuple[Job, Prepare]:
        """An attempt as a lane job, and its preparation: its start put on the log ahead of its
        turn, so that a job does not wait for the broker in its lane slot (the lanes get jobs
        ready as far ahead as the attempts' times and the starts' round trips call for)."""
        key = (record.deliveryId, record.round, record.attempt)
        started: list[asyncio.Future[None]] = []

        def prepare() -> None:
            started.append(self.starts.mark(key))

        async def job(leave: Leave) -> None:
            if not started:
                prepare()
            await asyncio.shield(started[0])
            began = time.monotonic()
            try:
                attempted = await self.sender.attempt(record)
            except Exception as exc:
                if self.publisher.stopping or _is_infrastructure(exc):
                    raise  # unfinished: redone after a restart
                actions: list[Action] = [DeadLetter(exc), Finish()]
            else:
                actions = conclude(attempted, now_ms(self.clock), self.state)
            self.lanes.served(lane, time.monotonic() - began)
            # The lane's slot is free once the receiver answered; the record is written behind.
            await self._carry_out(part, message, actions, leave)

        return job, prepare

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


class Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """Keeps the loop's partitions in step with the group, so that a partition changes hands
    without an attempt made twice: its running and queued attempts end and are committed before
    it goes, and what others wrote to `delivery-log` is in the journal before it comes."""

    def __init__(
        self, loop: Loop, drain_s: float, caught_up: Callable[[], Awaitable[object]]
    ) -> None:
        self.loop = loop
        self.drain_s = drain_s
        self.caught_up = caught_up

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        """Hand no more records on (the one being handed on ends first), let running and
        queued attempts end (at most `drain_s`), commit what is finished, then forget the
        partitions."""
        await self.loop.hold()
        await self.loop.drain(self.drain_s)
        await self.loop.commit()
        for tp in revoked:
            self.loop.parts.pop(tp, None)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        """Hold the partitions; hand their records on once `delivery-log` is read up to now."""
        self.loop.ready.clear()
        for tp in assigned:
            self.loop.parts[tp] = Partition()
        log.info(
            "dispatcher.assigned",
            partitions=sorted(f"{tp.topic}/{tp.partition}" for tp in assigned),
        )
        try:
            await self.caught_up()
        finally:
            self.loop.ready.set()
