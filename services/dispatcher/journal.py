"""Which attempts are already done: the dispatcher's guard against doing one twice.

Before a request goes out, the start of the attempt is on `delivery-log` (`Starts` writes the
attempts starting together as one record); after it, how it ended. A record is finished only
once its attempt's end is on `delivery-log` (and, for a retry, its next attempt is on a delay
tier), and offsets are committed a moment later. A kill in between makes a restarted
dispatcher read the record again; the journal, read back from the tail of `delivery-log` at
start and kept up to date while running, says what became of it:
- ended: the attempt is not made again; one that ended in `retrying` has its next attempt put
  on its tier again (it may be missing if the kill came between the two writes), and a second
  copy of a tier record is then skipped here like any other attempt already made or running;
- started and never ended: the request may have reached the receiver, so the attempt counts as
  made and failed, and the next one follows on schedule. No attempt number is sent twice.
"""

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import msgspec
import structlog
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition

from schemas import topics
from schemas.deliveries import AttemptsStarted, DeliveryAttempt, LogEntry
from services.common.clock import Clock, now_ms, system_clock
from services.dispatcher.broker import Consumer
from services.dispatcher.progress import smoothed

log = structlog.get_logger(__name__)

Key = tuple[str, int, int]  # delivery id, round, attempt
STARTED = "started"  # the outcome of an attempt whose end is not (yet) on the log


@dataclass(frozen=True)
class Done:
    """How a past attempt ended (`STARTED`: begun, and no end recorded)."""

    outcome: str
    next_attempt_ms: int | None


class Journal:
    """Attempts made (from the log) and attempts claimed by this process, bounded in size."""

    def __init__(self, limit: int = 500_000) -> None:
        self.limit = limit
        self.done: dict[Key, Done] = {}
        self.claimed: set[Key] = set()

    def note(self, entry: LogEntry) -> None:
        """Starts or an end are on the log. An end always wins: a start and its end may be on
        different partitions, read in either order."""
        if isinstance(entry, DeliveryAttempt):
            key = (entry.deliveryId, entry.round, entry.attempt)
            self.done[key] = Done(entry.outcome, entry.nextAttemptAtMs)
        else:
            for delivery, round_, attempt in entry.attempts:
                self.done.setdefault((delivery, round_, attempt), Done(STARTED, None))
        if len(self.done) > self.limit:  # forget the oldest tenth
            for old in list(self.done)[: self.limit // 10]:
                del self.done[old]
                self.claimed.discard(old)

    def claim(self, key: Key) -> bool:
        """Take an attempt on; False if it is running or was made in this process."""
        if key in self.claimed:
            return False
        self.claimed.add(key)
        return True


class Starts:
    """Puts attempts' starts on the log: the attempts marked in one turn of the event loop go out
    as one record, and each mark is a future that is done once that record is acknowledged."""

    def __init__(
        self, write: Callable[[bytes], Awaitable[None]], clock: Clock = system_clock
    ) -> None:
        self.write = write
        self.clock = clock
        self._keys: list[Key] = []
        self._written: asyncio.Future[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._encoder = msgspec.json.Encoder()
        self._round_trip_s: float | None = None

    @property
    def round_trip_s(self) -> float:
        """The running average of how long a start takes to be on the log (0 before the first)."""
        return self._round_trip_s or 0.0

    def mark(self, key: Key) -> "asyncio.Future[None]":
        """The start of attempt `key`: done once it is on the log (an error if it could not be).

        Shared by the attempts of a turn: await it through `asyncio.shield`."""
        if self._written is None:
            loop = asyncio.get_running_loop()
            self._written = loop.create_future()
            self._written.add_done_callback(_retrieve)
            loop.call_soon(self._flush)
        self._keys.append(key)
        return self._written

    def _flush(self) -> None:
        keys, written = self._keys, self._written
        self._keys, self._written = [], None
        assert written is not None
        record = AttemptsStarted(v=1, attempts=keys, startedAtMs=now_ms(self.clock))
        task = asyncio.create_task(self._send(self._encoder.encode(record), written))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, value: bytes, written: asyncio.Future[None]) -> None:
        began = time.monotonic()
        try:
            await self.write(value)
            self._round_trip_s = smoothed(self._round_trip_s, time.monotonic() - began)
        except asyncio.CancelledError:
            written.cancel()
            raise
        except Exception as exc:
            written.set_exception(exc)
        else:
            written.set_result(None)


def _retrieve(future: "asyncio.Future[None]") -> None:
    """Keep asyncio from warning about an error no attempt was left to see."""
    if not future.cancelled():
        future.exception()


_decoder = msgspec.json.Decoder(LogEntry)


class Follower:
    """Brings a journal up to date with the tail of `delivery-log`: the starts and ends every
    member of the group wrote, so a dispatcher that takes partitions over from another (one
    killed, or one that left the group) knows which of their attempts were begun or made.

    It reads with `consumer`, a reader outside any group, only when asked: `caught_up` (at start,
    and at every assignment, before the new partitions' records are read) reads what is on the
    log up to now, from where it stopped or from the last `per_partition` records of each
    partition, whichever is later. In between it fetches nothing: what this process writes is in
    its journal already, and another member writes only about the partitions it holds, which
    become this one's through an assignment. The previous owner's attempts that matter then are
    the ones it began or ended just before it stopped (its offsets are committed five times a
    second): the same tail a restart reads. An attempt begun before that tail (one a receiver held
    longer than the group takes to write `per_partition` records to each partition) counts as not
    begun after a takeover, as after a restart. Reading every member's records as they came cost
    the dispatcher and the broker a fetch and a decode per attempt for nothing (bench_dispatch)."""

    def __init__(self, consumer: Consumer, journal: Journal, per_partition: int) -> None:
        self.consumer = consumer
        self.journal = journal
        self.per_partition = per_partition
        self.tps: list[TopicPartition] = []
        self.records = 0
        self._rounds = 0
        self._round = asyncio.Event()  # set when a fetch round ends, then replaced
        self._asking = 0  # callers of `caught_up` waiting: the partitions are read meanwhile

    async def start(self) -> None:
        """Assign every partition of `delivery-log`, paused: the first `caught_up` reads each
        from its last `per_partition` records."""
        consumer = self.consumer
        await consumer.start()
        partitions = consumer.partitions_for_topic(topics.DELIVERY_LOG) or set()
        if not partitions:
            await consumer.topics()  # refresh metadata once
            partitions = consumer.partitions_for_topic(topics.DELIVERY_LOG) or set()
        self.tps = [TopicPartition(topics.DELIVERY_LOG, p) for p in sorted(partitions)]
        if not self.tps:
            return
        consumer.assign(self.tps)
        consumer.pause(*self.tps)
        for tp in self.tps:
            consumer.seek(tp, 0)  # moved on to the tail by the first `caught_up`

    async def run(self, stop: asyncio.Event) -> None:
        """Read while `caught_up` asks until `stop` is set (a broker error is waited out); stops
        the consumer."""
        try:
            while not stop.is_set():
                try:
                    batch = await self.consumer.getmany(timeout_ms=200, max_records=10_000)
                except KafkaError as exc:
                    log.warning("dispatcher.journal_read_failed", error=repr(exc))
                    await asyncio.sleep(0.5)
                    continue
                for records in batch.values():
                    for record in records:
                        self._note(record.value)
                self._rounds += 1
                self._round.set()
                self._round = asyncio.Event()
        finally:
            await self.consumer.stop()

    def _note(self, value: bytes | None) -> None:
        try:
            entry = _decoder.decode(value or b"")
        except Exception:  # not an entry (the sink dead-letters it)
            return
        self.journal.note(entry)
        self.records += 1

    async def caught_up(self, timeout_s: float = 30.0) -> bool:
        """Wait until what was on `delivery-log` now has been read (False: not within
        `timeout_s`; it is logged, and the dispatcher goes on)."""
        if not self.tps:
            return True
        deadline = time.monotonic() + timeout_s
        self._asking += 1
        try:
            ends = await self._from_tail()
            self.consumer.resume(*self.tps)
            # The broker may report an end short of a last batch of several records: two whole
            # rounds after the ends are reached read such a batch too.
            first = self._rounds
            while True:
                if self._rounds >= first + 2 and await _at_ends(self.consumer, ends):
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    log.warning("dispatcher.journal_behind", timeout_s=timeout_s)
                    return False
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._round.wait(), left)
        except KafkaError as exc:
            log.warning("dispatcher.journal_behind", error=repr(exc))
            return False
        finally:
            self._asking -= 1
            if not self._asking:
                self.consumer.pause(*self.tps)

    async def _from_tail(self) -> dict[TopicPartition, int]:
        """The log's ends now; a partition read less far than its last `per_partition` records
        (and its first, after retention) is moved on to them first."""
        consumer = self.consumer
        ends = await consumer.end_offsets(self.tps)
        starts = await consumer.beginning_offsets(self.tps)
        for tp in self.tps:
            tail = max(starts[tp], ends[tp] - self.per_partition)
            if await consumer.position(tp) < tail:
                consumer.seek(tp, tail)
        return ends


async def _at_ends(consumer: Consumer, ends: dict[TopicPartition, int]) -> bool:
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return False
    return True
