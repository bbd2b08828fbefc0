"""Tick records: the event time that drives the time-only alert rules, one per partition.

A tick carries the wall-clock time at which it was produced and the end offset that the same
partition of `executions` had at that moment. The alert engine applies a tick only once it has
processed that partition's executions up to that offset. Ticks and executions are different
topics, so the log alone does not order them; the offset in the tick does: a tick never runs
ahead of executions that were already on the log when it was produced. During a consumer
backlog (a worker that was down while executions with recent timestamps piled up) no rule sees
"now" before it has seen what happened before now, so no_activity cannot fire falsely, while an
idle partition (nothing to catch up on) applies its ticks at once.

The embedded broker answers ListOffsets with the base offset of a partition's last record batch
plus one, short of the real end when that batch holds several records; `OffsetReader.ends`
corrects it by reading the last batch, which is exact on Apache Kafka as well.
"""

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from schemas import topics
from schemas.ticks import Tick
from services.common.clock import Clock, now_ms, system_clock
from services.common.kafkaclients import KafkaClients

TICK_VERSION = 1
MAX_PENDING = 1000  # per partition: ten hours of backlog at the 15 s default


def tick_key(partition: int) -> bytes:
    """The record key of a partition's ticks (the partition itself is set explicitly)."""
    return f"tick/{partition}".encode()


def make_ticks(at_ms: int, ends: Mapping[int, int]) -> list[Tick]:
    """One tick per partition at `at_ms`, each bound to that partition's executions end."""
    return [Tick(TICK_VERSION, p, at_ms, end) for p, end in sorted(ends.items())]


class OffsetReader:
    """End and committed offsets, read by consumers of its own that never join a group.

    Two clients: one without a group that assigns and seeks freely, and one named after the
    group that only asks for its committed offsets (a grouped client that assigns partitions
    would start coordinating them).
    """

    def __init__(self, bootstrap: str, group_id: str | None = None) -> None:
        self._bootstrap = bootstrap
        self._group_id = group_id
        self._clients: dict[str | None, AIOKafkaConsumer] = {}
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """Connect the group-less client (idempotent)."""
        await self._client(None)

    async def stop(self) -> None:
        """Disconnect every client."""
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.stop()

    async def _client(self, group_id: str | None) -> AIOKafkaConsumer:
        # Created here, not in __init__: aiokafka clients bind to the running loop.
        client = self._clients.get(group_id)
        if client is None:
            client = KafkaClients(self._bootstrap).consumer(
                group_id=group_id, enable_auto_commit=False
            )
            await client.start()
            self._clients[group_id] = client
        return client

    async def ends(
        self, tps: Sequence[TopicPartition], timeout_s: float = 2.0
    ) -> dict[TopicPartition, int]:
        """The end offset of each partition, corrected for a short ListOffsets answer."""
        async with self._lock:
            consumer = await self._client(None)
            reported: dict[TopicPartition, int] = await consumer.end_offsets(list(tps))
            return await _read_last_batches(consumer, reported, timeout_s)

    async def committed(self, tp: TopicPartition) -> int | None:
        """The consumer group's committed offset of a partition (None before the first commit)."""
        if self._group_id is None:
            raise ValueError("an OffsetReader without a group has no committed offsets")
        async with self._lock:
            consumer = await self._client(self._group_id)
            offset: int | None = await consumer.committed(tp)
            return offset

    async def starts(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        """Where the group goes on reading each partition: its committed offset, or the log's
        first offset when none is committed or the log no longer reaches back to it."""
        async with self._lock:
            grouped = await self._client(self._group_id)
            committed = {tp: await grouped.committed(tp) for tp in tps}
            firsts: dict[TopicPartition, int] = await (await self._client(None)).beginning_offsets(
                list(tps)
            )
        return {tp: max(committed[tp] or 0, firsts[tp]) for tp in tps}

    async def read(self, tps: Sequence[TopicPartition], timeout_s: float = 10.0) -> list[Any]:
        """Every record of some (small, compacted) partitions, from the start to the end."""
        async with self._lock:
            consumer = await self._client(None)
            ends = await _read_last_batches(
                consumer, await consumer.end_offsets(list(tps)), timeout_s=2.0
            )
            return await _read_through(consumer, ends, timeout_s)

    async def partition_counts(self, names: Iterable[str]) -> dict[str, int]:
        """How many partitions each topic has (0 for a missing topic)."""
        async with self._lock:
            consumer = await self._client(None)
            await consumer.topics()  # refreshes the metadata the lookup below reads
            return {name: len(consumer.partitions_for_topic(name) or ()) for name in names}


async def _read_last_batches(
    consumer: AIOKafkaConsumer, reported: dict[TopicPartition, int], timeout_s: float
) -> dict[TopicPartition, int]:
    """Raise each reported end to one past the last record of the batch it points into."""
    ends = dict(reported)
    pending = {tp for tp, end in reported.items() if end > 0}
    if not pending:
        return ends
    consumer.assign(list(pending))
    for tp in pending:
        consumer.seek(tp, reported[tp] - 1)
    deadline = time.monotonic() + timeout_s
    try:
        while pending and time.monotonic() < deadline:
            batches = await consumer.getmany(*pending, timeout_ms=100)
            for tp, records in batches.items():
                if records:
                    ends[tp] = max(ends[tp], records[-1].offset + 1)
                    pending.discard(tp)
    finally:
        with contextlib.suppress(Exception):
            consumer.assign([])
    return ends


async def _read_through(
    consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int], timeout_s: float
) -> list[Any]:
    """The records of each partition from its beginning up to `ends`."""
    pending = {tp for tp, end in ends.items() if end > 0}
    records: list[Any] = []
    if not pending:
        return records
    consumer.assign(list(pending))
    await consumer.seek_to_beginning(*pending)
    deadline = time.monotonic() + timeout_s
    try:
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {sorted(pending)} to their ends")
            for tp, batch in (await consumer.getmany(*pending, timeout_ms=100)).items():
                records += [r for r in batch if r.offset < ends[tp]]
                if batch and batch[-1].offset + 1 >= ends[tp]:
                    pending.discard(tp)
    finally:
        with contextlib.suppress(Exception):
            consumer.assign([])
    return records


class TickGate:
    """Holds each tick back until its partition's executions are processed up to its offset.

    Positions are the next unprocessed offset of `executions` per partition, known from the
    records handled since the last assignment, else from the group's committed offset (all
    before it was processed by an earlier owner). Pending ticks live in memory only: after a
    crash the next ticks take their place.
    """

    def __init__(self, start_offset: Callable[[int], Awaitable[int]]) -> None:
        self._start_offset = start_offset
        self._positions: dict[int, int] = {}
        self._pending: dict[int, list[Tick]] = {}

    def reset(self) -> None:
        """Forget positions and pending ticks (partitions were revoked or assigned)."""
        self._positions.clear()
        self._pending.clear()

    def executed(self, partition: int, offset: int) -> Tick | None:
        """Note an executions record as processed; the newest tick that became due, if any."""
        self._positions[partition] = offset + 1
        return self._due(partition) if self._pending.get(partition) else None

    async def admit(self, tick: Tick) -> Tick | None:
        """Queue a tick; the newest due tick of its partition, if any."""
        if tick.partition not in self._positions:
            self._positions[tick.partition] = await self._start_offset(tick.partition)
        pending = self._pending.setdefault(tick.partition, [])
        pending.append(tick)
        del pending[:-MAX_PENDING]
        return self._due(tick.partition)

    def _due(self, partition: int) -> Tick | None:
        position = self._positions[partition]
        pending = self._pending[partition]
        due = [t for t in pending if t.executionsEnd <= position]
        if not due:
            return None
        self._pending[partition] = [t for t in pending if t.executionsEnd > position]
        return max(due, key=lambda t: t.atMs)


class TickProducer:
    """Produces one tick per partition of `executions`, each acknowledged before it returns."""

    def __init__(
        self,
        new_producer: Callable[[], AIOKafkaProducer],
        offsets: OffsetReader,
        partitions: int,
        clock: Clock = system_clock,
    ) -> None:
        self._new_producer = new_producer
        self._producer: AIOKafkaProducer | None = None
        self._offsets = offsets
        self._tps = [TopicPartition(topics.EXECUTIONS, p) for p in range(partitions)]
        self._clock = clock

    async def start(self) -> None:
        """Connect the producer (idempotent)."""
        if self._producer is None:
            producer = self._new_producer()
            await producer.start()
            self._producer = producer

    async def stop(self) -> None:
        """Flush and disconnect."""
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    async def tick_once(self) -> list[Tick]:
        """Read the executions ends, then produce a tick for every partition."""
        await self.start()
        assert self._producer is not None
        at_ms = now_ms(self._clock)  # before the ends: whatever they miss was appended later
        ends = await self._offsets.ends(self._tps)
        ticks = make_ticks(at_ms, {tp.partition: end for tp, end in ends.items()})
        futures = [
            await self._producer.send(
                topics.TICKS,
                msgspec.json.encode(t),
                key=tick_key(t.partition),
                partition=t.partition,
            )
            for t in ticks
        ]
        await asyncio.gather(*futures)
        return ticks

    async def run(self, interval_s: float, stop: asyncio.Event) -> None:
        """Tick every `interval_s` until `stop` is set."""
        await self.start()
        while not stop.is_set():
            await self.tick_once()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)
