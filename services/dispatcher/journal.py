"""Which attempts are already done: the dispatcher's guard against doing one twice.

Before a request goes out, the start of the attempt is on `delivery-log`; after it, how it
ended. A record is finished only once its attempt's end is on `delivery-log` (and, for a retry,
its next attempt is on a delay tier), and offsets are committed a moment later. A kill in
between makes a restarted dispatcher read the record again; the journal, read back from the
tail of `delivery-log` at start and kept up to date while running, says what became of it:
- ended: the attempt is not made again; one that ended in `retrying` has its next attempt put
  on its tier again (it may be missing if the kill came between the two writes), and a second
  copy of a tier record is then skipped here like any other attempt already made or running;
- started and never ended: the request may have reached the receiver, so the attempt counts as
  made and failed, and the next one follows on schedule. No attempt number is sent twice.
"""

import asyncio
import time
from dataclasses import dataclass

import msgspec
import structlog
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from schemas import topics
from schemas.deliveries import DeliveryAttempt, LogEntry

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
        """An attempt's start or end is on the log (its end always comes after its start)."""
        key = (entry.deliveryId, entry.round, entry.attempt)
        if isinstance(entry, DeliveryAttempt):
            self.done[key] = Done(entry.outcome, entry.nextAttemptAtMs)
        else:
            self.done[key] = Done(STARTED, None)
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


_decoder = msgspec.json.Decoder(LogEntry)


async def read_tail(
    bootstrap: str, per_partition: int, quiet_s: float = 0.3, timeout_s: float = 30.0
) -> list[LogEntry]:
    """The last `per_partition` records of every `delivery-log` partition, oldest first."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
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
        quiet_until = time.monotonic() + quiet_s
        # The embedded broker reports ends a little short: read on until nothing more comes.
        while time.monotonic() < quiet_until and time.monotonic() - started < timeout_s:
            batch = await consumer.getmany(timeout_ms=100, max_records=10_000)
            for records in batch.values():
                for record in records:
                    try:
                        found.append(_decoder.decode(record.value or b""))
                    except (msgspec.DecodeError, msgspec.ValidationError):
                        continue
                quiet_until = time.monotonic() + quiet_s
            await asyncio.sleep(0)
    finally:
        await consumer.stop()
    log.info("dispatcher.journal_read", records=len(found))
    return found
