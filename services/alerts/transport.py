"""faust's Kafka transport, adapted to the embedded broker.

Two facts about the embedded broker shape the faust wiring: it has no idempotent producer
(faust's at-least-once default does not ask for one), and it answers ListOffsets short of a
multi-record last batch, so faust's table recovery, which reads changelogs up to that answer,
would drop the newest writes; `Consumer.highwaters` returns corrected ends instead. It also
answers a waiting fetch only when the fetch's maximum wait is up, so that wait is kept short
while records come (and long once quiet, see `FetchWait`).
And faust's consumer counts offsets it jumps over as processed only where a log has gaps by
design (see `services.alerts.order`).
"""

import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import faust
from aiokafka.structs import TopicPartition
from faust.streams import _current_event
from faust.transport.drivers import aiokafka as faust_kafka
from mode.services import WaitResults

from schemas import topics
from services.alerts.ticks import OffsetReader
from services.common.kafka import FetchWait

FETCH_MAX_WAIT_MS = 25


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
