"""Records of one topic written a turn of the event loop at a time, one batch per partition.

The dispatcher writes an attempt's end to `delivery-log` once its receiver answered, and the
answers of many attempts arrive in one turn. Producing each record alone costs a coroutine, a
future and the producer's per-record bookkeeping (about 20 us of the dispatcher's CPU each, a
third of what the request itself costs); the records of a turn go out instead as one batch per
partition (about 7 us each), partitioned by key as the producer would (murmur2), so an attempt's
end lands where it always did. Each record's future is done once its batch is acknowledged.

A batch the broker refuses as a whole (a record too large) is written again record by record,
so that only the record at fault fails; any other broker error is retried until the broker
answers (`retry`), as for every write of the dispatcher.
"""

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka.partitioner import DefaultPartitioner

from services.common.kafka import REFUSED_RECORD_ERRORS
from services.dispatcher.broker import Batch, Producer

# Writes one record, retried until the broker answers (`Publisher.produce`).
ProduceOne = Callable[[str, bytes, bytes | None], Awaitable[None]]
# Runs a write, retried until the broker answers or refuses the record(s).
Retry = Callable[[Callable[[], Awaitable[None]]], Awaitable[None]]
Pending = tuple[bytes, bytes | None, "asyncio.Future[None]"]


class TurnBatches:
    """Writes the records added in one turn of the event loop to `topic` together."""

    def __init__(self, producer: Producer, topic: str, retry: Retry, one: ProduceOne) -> None:
        self.producer = producer
        self.topic = topic
        self.retry = retry
        self.one = one
        self._pending: list[Pending] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._partitioner = DefaultPartitioner()
        self._spread = itertools.count()  # keyless records: round robin

    def add(self, value: bytes, key: bytes | None) -> "asyncio.Future[None]":
        """Write a record with the others of this turn: done once the broker has it."""
        loop = asyncio.get_running_loop()
        if not self._pending:
            loop.call_soon(self._flush)
        future = loop.create_future()
        self._pending.append((value, key, future))
        return future

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        task = asyncio.create_task(self._write(pending))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _write(self, pending: list[Pending]) -> None:
        try:
            partitions = sorted(await self._partitions())
            by_partition: dict[int, list[Pending]] = {}
            for record in pending:
                by_partition.setdefault(self._partition(record[1], partitions), []).append(record)
            await asyncio.gather(*(self._write_partition(p, rs) for p, rs in by_partition.items()))
        except BaseException as exc:  # a stop: every waiter still unanswered hears of it
            for _, _, future in pending:
                _settle(future, exc)
            if isinstance(exc, asyncio.CancelledError):
                raise

    async def _partitions(self) -> set[int]:
        found: set[int] = set()

        async def look() -> None:
            found.update(await self.producer.partitions_for(self.topic))

        await self.retry(look)
        return found

    def _partition(self, key: bytes | None, partitions: list[int]) -> int:
        if key is None:
            return partitions[next(self._spread) % len(partitions)]
        partition: int = self._partitioner(key, partitions, partitions)
        return partition

    async def _write_partition(self, partition: int, records: list[Pending]) -> None:
        while records:
            batch, count = self._fill(records)
            await self._write_batch(partition, batch, records[:count])
            records = records[count:]

    def _fill(self, records: list[Pending]) -> tuple[Batch, int]:
        """A closed batch of the first records that fit in one, and how many they are."""
        batch = self.producer.create_batch()
        count = 0
        for value, key, _ in records:
            if batch.append(key=key, value=value, timestamp=None) is None:  # full
                break
            count += 1
        batch.close()
        return batch, count

    async def _write_batch(self, partition: int, batch: Batch, records: list[Pending]) -> None:
        made = [batch]  # the first try sends it; a retry builds the same batch again

        async def send() -> None:
            ready = made.pop() if made else self._fill(records)[0]
            await (await self.producer.send_batch(ready, self.topic, partition=partition))

        try:
            await self.retry(send)
        except REFUSED_RECORD_ERRORS as exc:
            if len(records) == 1:
                _settle(records[0][2], exc)
            else:  # only the record at fault fails
                await asyncio.gather(*(self._write_one(r) for r in records))
            return
        except Exception as exc:  # the broker failed during a stop: unfinished, redone later
            for _, _, future in records:
                _settle(future, exc)
            return
        for _, _, future in records:
            _settle(future, None)

    async def _write_one(self, record: Pending) -> None:
        value, key, future = record
        try:
            await self.one(self.topic, value, key)
        except Exception as exc:
            _settle(future, exc)
        else:
            _settle(future, None)


def _settle(future: "asyncio.Future[Any]", error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    elif isinstance(error, asyncio.CancelledError):
        future.cancel()
    else:
        future.set_exception(error)
