"""faust's Kafka transport, adapted to the embedded broker.

Two facts about the embedded broker shape the faust wiring: it has no idempotent producer
(faust's at-least-once default does not ask for one), and it answers ListOffsets short of a
multi-record last batch, so faust's table recovery, which reads changelogs up to that answer,
would drop the newest writes; `Consumer.highwaters` returns corrected ends instead. It also
answers a waiting fetch only when the fetch's maximum wait is up, so that wait is kept short
while records come (and long once quiet, see `FetchWait`).
And faust's consumer counts offsets it jumps over as processed only where a log has gaps by
design (see `services.alerts.order`).

Two more adapt faust to a worker that batches: its fetcher does not stall for a second when a
stream buffer fills (`Consumer._wait_next_records`), and a batch writes each partition's table
rows to the store and the changelog together, without faust's per-row machinery (`write_rows`).
"""

import weakref
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import Any, cast

import faust
import structlog
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition
from faust.streams import _current_event
from faust.transport.drivers import aiokafka as faust_kafka
from faust.types import TP
from mode.services import WaitResults

from schemas import topics
from services.alerts.batch import Row
from services.alerts.ticks import OffsetReader
from services.common.kafka import FetchWait

log = structlog.get_logger(__name__)

FETCH_MAX_WAIT_MS = 25
# How often the fetcher asks for records while a stream buffer is full (see `Consumer`).
BUFFERED_WAIT_S = 0.01


class ConsumerThread(faust_kafka.AIOKafkaConsumerThread):
    """faust's consumer thread, with a short fetch wait while records come (`FetchWait`)."""

    fetch_wait: FetchWait  # made with the consumer

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # faust hard-codes 1500 ms, and the embedded broker answers a waiting fetch only when
        # that time is up, not when data arrives: every record would wait for it. Read by
        # aiokafka when the consumer starts.
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        self.fetch_wait = FetchWait(FETCH_MAX_WAIT_MS)
        return consumer

    async def _fetch_records(self, consumer: Any, *args: Any, **kwargs: Any) -> Any:
        """faust's fetch of a batch (on this thread's loop), then the next fetch's wait."""
        records = await super()._fetch_records(consumer, *args, **kwargs)
        self.fetch_wait.after_fetch(consumer, sum(map(len, records.values())))
        return records


class Consumer(faust_kafka.Consumer):
    """faust's Kafka consumer with exact end offsets (table recovery reads up to them)."""

    def _new_consumer_thread(self) -> Any:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def wait_first(self, *coros: Any, timeout: Any = None) -> Any:  # noqa: ASYNC109
        """faust's consumer loop hands each record on through `wait_first(on_message, flow
        suspended)`, which makes four tasks per record to race the two against the service's
        stop. While the flow is not suspended, the record is handed on directly instead (a
        rebalance that suspends the flow meanwhile leaves the record to `Order`, like any
        record fetched before a rebalance)."""
        if len(coros) == 2 and timeout is None and _waits_on(coros[1], self.suspend_flow):
            work, suspended = coros
            if not self.suspend_flow.is_set():
                suspended.close()  # never started
                return WaitResults([work], [await work], False)
        return await super().wait_first(*coros, timeout=timeout)

    async def _wait_next_records(self, timeout: float) -> Any:  # noqa: ASYNC109
        """faust's fetcher waits up to `timeout` (1 s) for records of the partitions whose
        stream buffers have room. A partition whose buffer filled is left out of that wait, and
        the wait does not end when the buffer drains: a worker working off a backlog stalled
        for a second each time its buffer filled (twice in 30,000 records). While a partition is
        left out, the fetcher asks again every `BUFFERED_WAIT_S`."""
        if self._buffered_partitions:
            timeout = min(timeout, BUFFERED_WAIT_S)
        return await super()._wait_next_records(timeout)

    async def _add_gap(self, tp: Any, offset_from: int, offset_to: int) -> None:
        """Count offsets jumped over as processed only on a compacted topic: elsewhere a jump
        means records fetched before a seek, and the records jumped over are still to come
        (see `services.alerts.order`)."""
        if tp.topic in topics.COMPACTED:
            await super()._add_gap(tp, offset_from, offset_to)

    async def highwaters(self, *partitions: Any) -> Mapping[Any, int]:
        """The end offset of each partition, corrected for a short ListOffsets answer."""
        reader: OffsetReader = cast(AlertsApp, self.app).offsets
        ends = await reader.ends([TopicPartition(tp.topic, tp.partition) for tp in partitions])
        return {tp: ends[TopicPartition(tp.topic, tp.partition)] for tp in partitions}


def _waits_on(coro: Any, event: Any) -> bool:
    """Whether `coro` is a `wait()` of `event` not yet started."""
    frame = getattr(coro, "cr_frame", None)
    return frame is not None and frame.f_locals.get("self") is event


class Transport(faust_kafka.Transport):
    """faust's Kafka transport with the corrected consumer."""

    Consumer = Consumer


class AlertsApp(faust.App):
    """The faust app of the alert engine."""

    offsets: OffsetReader

    def _new_transport(self) -> Any:
        return Transport(self.conf.broker_consumer, self)


async def write_rows(
    table: MutableMapping[bytes, bytes], partition: int, rows: Sequence[Row]
) -> None:
    """Write a batch's rows of one partition to a faust table: its store, then its changelog,
    with the partition's persisted offset set once, when the last record is acknowledged.

    faust writes a row at a time through its producer buffer: a future message, a callback and
    a store write of the persisted offset for every record. Here the changelog records, serialized
    by the changelog topic as faust would, go straight to the producer, which adds them to its
    pending batches as faust's own sends do. The order of effects is faust's (store first, then
    changelog), and the caller's commit flushes the producer before offsets go. Deleted rows, and
    rows the producer refuses, go faust's way, row by row.
    """
    faust_table = cast(Any, table)
    puts: list[tuple[bytes, bytes]] = []
    for key, value in rows:
        if value is None:
            table.pop(key, None)
        else:
            puts.append((key, value))
    if not puts:
        return
    store, topic = faust_table.data, faust_table.changelog_topic
    name = topic.get_topic_name()
    producer = faust_table.app.producer._ensure_producer()
    key_serializer, value_serializer = faust_table.key_serializer, faust_table.value_serializer
    sent, last = 0, None
    try:
        for key, value in puts:
            store[key] = value
            raw_key, _ = topic.prepare_key(key, key_serializer)
            raw_value, _ = topic.prepare_value(value, value_serializer)
            last = await producer.send(name, raw_value, key=raw_key, partition=partition)
            sent += 1
    except KafkaError as exc:  # the producer closed or timed out: faust's buffer takes the rest
        log.warning(
            "alerts.changelog_send_failed", topic=name, partition=partition, error=repr(exc)
        )
        for key, value in puts[sent:]:
            table[key] = value
    if last is not None:
        last.add_done_callback(_persisted(store, TP(name, partition)))


def _persisted(store: Any, tp: TP) -> Callable[[Any], None]:
    """Once a partition's last changelog record of a batch is acknowledged, the store's persisted
    offset for it is that record's offset (a restart replays the changelog after it)."""

    def done(delivered: Any) -> None:
        if delivered.cancelled() or delivered.exception() is not None:
            log.error(
                "alerts.changelog_not_written", topic=tp.topic, partition=tp.partition,
                error="cancelled" if delivered.cancelled() else repr(delivered.exception()),
            )  # fmt: skip
            return
        store.set_persisted_offset(tp, delivered.result().offset)

    return done


def entering(events: Sequence[Any]) -> Callable[[int | None], None]:
    """Make an event of the batch of a partition the current one (None: no event).

    faust tables take the partition of a read or a write (the changelog's partition, the RocksDB
    database) from the event being processed, a context variable its stream sets in its own task.
    A batch is handled after its events were taken, in the agent's task, so the engine enters
    each record's partition, and each partition whose rows it writes, by setting that variable
    there to one of the batch's events of that partition (never the stream's `current_event`
    attribute, which the stream's task reads).
    """
    by_partition = {event.message.partition: event for event in events}

    def enter(partition: int | None) -> None:
        event = None if partition is None else by_partition[partition]
        _current_event.set(None if event is None else weakref.ref(event))

    return enter
