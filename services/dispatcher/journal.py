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
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import msgspec
import structlog
from aiokafka.structs import TopicPartition

from schemas import topics
from schemas.deliveries import AttemptsStarted, DeliveryAttempt, LogEntry
from services.common.clock import Clock, now_ms, system_clock
from services.dispatcher.broker import Consumer

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
        try:
            await self.write(value)
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


async def read_tail(
    consumer: Consumer, per_partition: int, quiet_s: float = 0.3, timeout_s: float = 30.0
) -> list[LogEntry]:
    """The last `per_partition` records of every `delivery-log` partition, oldest first (read
    with `consumer`, a reader outside any group, started here and stopped when done)."""
    await consumer.start()
    started = time.monotonic()
    found: list[LogEntry] = []
    try:
        partitions = consumer.partitions_for_topic(topics.DELIVERY_LOG) or set()
        if not partitions:
            await consumer.topics()  # refresh metadata once
            partitions = consumer.partitions_for_topic(topics.DELIVERY_LOG) or set()
        tps = [TopicPartition(topics.DELIVERY_LOG, p) for p in sorted(partitions)]
        if not tps:
            return found
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        for tp in tps:
            consumer.seek(tp, max(starts[tp], ends[tp] - per_partition))
        # Up to the end offsets, then on until nothing more comes for `quiet_s`: the embedded
        # broker reports ends a little short.
        quiet_until: float | None = None
        while time.monotonic() - started < timeout_s:
            batch = await consumer.getmany(timeout_ms=100, max_records=10_000)
            for records in batch.values():
                for record in records:
                    try:
                        found.append(_decoder.decode(record.value or b""))
                    except Exception:  # noqa: S112 - not an entry (the sink dead-letters it)
                        continue
            now = time.monotonic()
            if batch or not await _at_ends(consumer, ends):
                quiet_until = None
            elif quiet_until is None:
                quiet_until = now + quiet_s
            elif now >= quiet_until:
                break
    finally:
        await consumer.stop()
    log.info("dispatcher.journal_read", records=len(found))
    return found


async def _at_ends(consumer: Consumer, ends: dict[TopicPartition, int]) -> bool:
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return False
    return True
