"""The log sink: Kafka `executions`, `delivery-log`, `alert-events` and `alert-acks` ->
ClickHouse, in batches, exactly once as users see it.

Invariants:
- Offsets are committed only after the batch's inserts are acknowledged, in batch order.
- A replayed record is dropped before insert when its (project, execution) is already stored or
  in flight; a retried insert carries the same `insert_deduplication_token`.
- `ingest_ts` is strictly increasing per partition, and never below that partition's published
  watermark, so a row can never appear behind a cursor a client already holds.
- Delivery attempts share the batches, inserts and commits; they have no watermark (nothing pages
  them by ingestion), and a replayed attempt collapses in its ReplacingMergeTree (read with FINAL).
- Alert events and acknowledgements ride along the same way (`alerts`, `alert_acks`: replacing
  tables read with FINAL); what cannot be stored of them goes to `alert-events.dlq`.
"""

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, KafkaError
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata, TopicPartition
from prometheus_client import Counter, Histogram

from schemas import topics
from services.common.clickhouse import ClickHouse
from services.common.kafka import REFUSED_RECORD_ERRORS, dead_letter_headers, describe_error
from services.common.kafkaclients import KafkaClients
from services.common.workers import SinkConfig
from services.logsink import rows
from services.logsink.batch import Batch
from services.logsink.inserts import stored_keys, write
from services.logsink.watermarks import PartitionClock, advance_idle, load_clock, publish

log = structlog.get_logger(__name__)

# Subscription, silence and acknowledgement records written to `executions` as markers for the
# alert engine (the encoder puts the tag first).
MARKERS = (b'{"kind":"subscription"', b'{"kind":"silence"', b'{"kind":"ack"')
RECORDS = Counter("cc_logsink_records", "Records consumed from executions")
DEAD_LETTERS = Counter("cc_logsink_dead_letters", "Records sent to executions.dlq")
INSERTED = Counter("cc_logsink_inserted_executions", "Executions inserted into ClickHouse")
DUPLICATES = Counter("cc_logsink_duplicates", "Replayed or resent executions dropped")
ATTEMPTS = Counter("cc_logsink_delivery_attempts", "Delivery attempts inserted into ClickHouse")
ATTEMPT_DEAD_LETTERS = Counter(
    "cc_logsink_delivery_dead_letters", "Records sent to delivery-log.dlq"
)
ALERT_EVENTS = Counter("cc_logsink_alert_events", "Alert events and acknowledgements consumed")
ALERT_DEAD_LETTERS = Counter("cc_logsink_alert_dead_letters", "Records sent to alert-events.dlq")
INSERT_SECONDS = Histogram("cc_logsink_insert_seconds", "Batch insert latency")

_DLQ = {
    topics.EXECUTIONS: (topics.EXECUTIONS_DLQ, DEAD_LETTERS),
    topics.DELIVERY_LOG: (topics.DELIVERY_LOG_DLQ, ATTEMPT_DEAD_LETTERS),
    topics.ALERT_EVENTS: (topics.ALERT_EVENTS_DLQ, ALERT_DEAD_LETTERS),
    topics.ALERT_ACKS: (topics.ALERT_EVENTS_DLQ, ALERT_DEAD_LETTERS),
}
SOURCES = [topics.EXECUTIONS, topics.DELIVERY_LOG, topics.ALERT_EVENTS, topics.ALERT_ACKS]
_NONE: list[tuple[Any, ...]] = []  # never appended to: Batch.add copies rows out


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, sink: "LogSink") -> None:
        self.sink = sink

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.sink.drain()

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self.sink.load_clocks(assigned)


class LogSink:
    """Consumes `executions`, `delivery-log`, `alert-events` and `alert-acks`; writes
    ClickHouse, commits, keeps watermarks."""

    def __init__(
        self,
        config: SinkConfig,
        clickhouse: ClickHouse,
        kafka: KafkaClients,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.ch = clickhouse
        self.kafka = kafka
        self.wall = wall_clock
        self.clock = PartitionClock()
        self.batch = Batch(opened_at=time.monotonic())
        self.inflight: deque[tuple[Batch, asyncio.Task[None]]] = deque()
        self.pending_keys: set[tuple[str, str]] = set()
        self.dedup_lock = asyncio.Lock()
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self.inserted = 0
        self.dead_letters = 0
        self.ready = asyncio.Event()
        self.stored_since_publish = False

    # ---- lifecycle -------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set, then flush, commit and leave the group."""
        self.consumer = self.kafka.consumer(
            group_id=self.config.group_id, enable_auto_commit=False, auto_offset_reset="earliest",
            max_poll_records=5000, session_timeout_ms=10_000, heartbeat_interval_ms=1_000,
            rebalance_timeout_ms=10_000, fetch_max_bytes=64 * 1024 * 1024,
            max_partition_fetch_bytes=8 * 1024 * 1024,
        )  # fmt: skip
        self.producer = self.kafka.producer()
        await self.producer.start()
        await self.consumer.start()
        self.consumer.subscribe(SOURCES, listener=_Rebalance(self))
        log.info("logsink.started", group=self.config.group_id)
        next_watermark = 0.0
        quiet_until = 0.0
        try:
            while not stop.is_set():
                await self._poll()
                now = time.monotonic()
                # Fast while rows are arriving (they wait for the bound); slow when quiet.
                due = self.stored_since_publish or now >= quiet_until
                if now >= next_watermark and due:
                    self.stored_since_publish = False
                    await self._advance_idle()
                    await self.publish_watermarks()
                    next_watermark = now + self.config.watermark_every_s
                    quiet_until = now + self.config.quiet_watermark_every_s
        finally:
            await self.drain()
            with contextlib.suppress(Exception):
                await self.publish_watermarks()
            await self.consumer.stop()
            await self.producer.stop()
            log.info("logsink.stopped", inserted=self.inserted, dead_letters=self.dead_letters)

    async def _poll(self) -> None:
        assert self.consumer is not None
        cfg = self.config
        full = len(self.inflight) >= cfg.max_inflight
        # While every insert slot is busy the open batch keeps filling up to its bounds, and
        # only a filled one pauses the partitions: under a backlog batches grow to the bound,
        # so each stored-key lookup and each insert (one part per table) covers more rows.
        blocked = full and self.batch.filled(cfg.flush_rows, cfg.flush_bytes)
        assignment = list(self.consumer.assignment())
        if blocked and assignment:
            self.consumer.pause(*assignment)  # back-pressure without leaving the group
        elif self.consumer.paused():
            self.consumer.resume(*self.consumer.paused())
        fetched = await self.consumer.getmany(timeout_ms=50, max_records=5000)
        for tp, records in fetched.items():
            for record in records:
                await self._add(tp, record)
        await self._complete_heads()
        full = len(self.inflight) >= cfg.max_inflight
        if not full and self.batch.due(
            time.monotonic(), cfg.flush_rows, cfg.flush_bytes, cfg.flush_s
        ):
            self._dispatch()

    # ---- records to rows -------------------------------------------------------------------

    async def _add(self, tp: TopicPartition, record: ConsumerRecord[bytes, bytes]) -> None:
        if not self.batch.records:
            self.batch.opened_at = time.monotonic()
        value = record.value or b""
        if tp.topic == topics.EXECUTIONS and value.startswith(MARKERS):
            self.batch.note(tp, record.offset, 0, len(value))  # the alert engine's: no events
            return
        ts = 0
        executions = payloads = started = attempts = _NONE
        alert = ack = None
        try:
            if tp.topic == topics.ALERT_EVENTS:
                ALERT_EVENTS.inc()
                alert = rows.alert_row(value)
            elif tp.topic == topics.ALERT_ACKS:
                ALERT_EVENTS.inc()
                ack = rows.ack_row(record.value)
            elif tp.topic == topics.DELIVERY_LOG:  # no ingest_ts: attempts have no cursor
                row = rows.attempt_row(value)
                attempts = _NONE if row is None else [row]
            else:
                RECORDS.inc()
                executions, payloads, started, ts = rows.execution_rows(
                    value, tp.partition, record.offset, self.clock.stamp,
                    int(record.timestamp) * 1000,
                )  # fmt: skip
        except Exception as exc:  # whatever raised, this record is at fault: a dead letter
            if tp.topic == topics.EXECUTIONS:  # it keeps a position, so the watermark moves on
                ts = self.clock.stamp(tp.partition, int(record.timestamp) * 1000)
            self.batch.note(tp, record.offset, ts, len(value))
            self.batch.dead_letters += 1
            await self._dead_letter(record, exc)
            return
        self.batch.add(record, executions, payloads, started, attempts, alert, ack)
        self.batch.note(tp, record.offset, ts, len(value))

    async def _dead_letter(
        self, record: ConsumerRecord[bytes, bytes], error: BaseException | str
    ) -> None:
        """Send a record the sink cannot store to its topic's dead-letter topic, with why."""
        assert self.producer is not None
        dlq, counter = _DLQ[record.topic]
        self.dead_letters += 1
        counter.inc()
        headers = dead_letter_headers(record.topic, record.partition, record.offset, error)
        try:
            await self.producer.send_and_wait(dlq, record.value, key=record.key, headers=headers)
        except REFUSED_RECORD_ERRORS:  # too large to copy: the source header says where it is
            await self.producer.send_and_wait(dlq, None, key=record.key, headers=headers)
        log.warning(
            "logsink.dead_letter",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            reason=describe_error(error)[:200],
        )

    # ---- flushing --------------------------------------------------------------------------

    def _dispatch(self) -> None:
        batch, self.batch = self.batch, Batch(opened_at=time.monotonic())
        self.inflight.append((batch, asyncio.create_task(self._insert(batch))))

    async def _insert(self, batch: Batch) -> None:
        started = time.perf_counter()
        await self._retrying(lambda: self._deduplicate(batch))
        deduplicated = time.perf_counter()
        await self._retrying(lambda: self._write(batch))
        stored = len(batch.executions)
        self.inserted += stored
        INSERTED.inc(stored)
        ATTEMPTS.inc(len(batch.attempts))
        INSERT_SECONDS.observe(time.perf_counter() - started)
        log.info(
            "logsink.batch", records=batch.records, executions=stored,
            started=len(batch.started), attempts=len(batch.attempts),
            dead_letters=batch.dead_letters, bytes=batch.nbytes,
            insert_ms=round((time.perf_counter() - started) * 1000, 1),
            dedup_ms=round((deduplicated - started) * 1000, 1),
        )  # fmt: skip

    async def _retrying(self, step: Callable[[], Awaitable[None]]) -> None:
        """Run `step` until it succeeds, backing off: what still fails here is infrastructure
        (rows ClickHouse refuses are set aside by `_store`, never retried)."""
        delay = 0.2
        while True:
            try:
                await step()
                return
            except Exception as exc:  # retried with the same tokens: ClickHouse drops repeats
                log.warning("logsink.insert_retry", error=repr(exc)[:300], retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _deduplicate(self, batch: Batch) -> None:
        async with self.dedup_lock:
            # The keys in flight as the lookup starts: a batch written and committed while it
            # runs leaves `pending_keys`, and the lookup may have read the table before its rows.
            pending = set(self.pending_keys)
            known = await stored_keys(self.ch, batch)
            before = len(batch.executions)
            batch.keep_executions(known | pending)
            DUPLICATES.inc(before - len(batch.executions))
            batch.keys = {(row[0], row[5]) for row in batch.executions}
            self.pending_keys |= batch.keys

    async def _write(self, batch: Batch) -> None:
        """Insert every table of the batch, then dead-letter the records behind refused rows."""
        await write(self.ch, batch, self.config.dedup_scope, self._dead_letter)

    async def _complete_heads(self) -> None:
        while self.inflight and self.inflight[0][1].done():
            batch, task = self.inflight.popleft()
            task.result()
            await self._commit(batch)

    async def _commit(self, batch: Batch) -> None:
        assert self.consumer is not None
        offsets = {tp: OffsetAndMetadata(offset, "") for tp, offset in batch.next_offsets.items()}
        try:
            await self.consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as exc:
            # The partitions moved to another member; it replays them and drops what is stored.
            log.warning("logsink.commit_failed", error=repr(exc)[:200])
        for partition, ts in batch.max_ts.items():
            self.clock.advance(partition, ts)
        self.stored_since_publish = True
        self.pending_keys -= batch.keys

    async def drain(self) -> None:
        """Flush the open batch and wait for every insert, committing in order."""
        if self.batch.records:
            self._dispatch()
        while self.inflight:
            await asyncio.wait([self.inflight[0][1]])
            await self._complete_heads()

    # ---- watermarks ------------------------------------------------------------------------

    async def load_clocks(self, assigned: list[TopicPartition]) -> None:
        """On assignment, continue each partition's clock from what is stored."""
        partitions = [tp.partition for tp in assigned if tp.topic == topics.EXECUTIONS]
        if not partitions:
            return
        await load_clock(self.ch, self.clock, partitions)
        self.ready.set()
        log.info("logsink.assigned", partitions=sorted(partitions))

    async def _advance_idle(self) -> None:
        """Partitions with nothing buffered, in flight or unread advance to now."""
        assert self.consumer is not None
        mine = topics.EXECUTIONS  # delivery-log partitions have no watermark
        busy = self.batch.partitions(mine).union(*(b.partitions(mine) for b, _ in self.inflight))
        await advance_idle(self.consumer, self.clock, busy, int(self.wall() * 1_000_000))

    def visibility_bound(self, partitions: int) -> int | None:
        """The bound over `executions` partitions 0..partitions-1 from the watermarks this sink
        published, while it owns all of them; None otherwise (the API then reads ClickHouse)."""
        if self.consumer is None:
            return None
        owned = {tp.partition for tp in self.consumer.assignment() if tp.topic == topics.EXECUTIONS}
        wanted = set(range(partitions))
        return self.clock.bound(wanted) if wanted <= owned else None

    async def publish_watermarks(self) -> None:
        """Write changed partition watermarks for the API's visibility bound."""
        await publish(self.ch, self.clock)
