"""Per-partition ingest time and the watermarks the API's gapless cursor reads.

`ingest_ts` is strictly increasing per partition and never below that partition's published
watermark; the watermark of a partition is raised once its rows are stored (or, idle, to now)
and written to `sink_watermarks`, below which the API shows rows.
"""

from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer

from schemas import topics
from services.common.clickhouse import ClickHouse
from services.logsink import rows

_LAST_TS = (
    "SELECT partition, max(ingest_ts) FROM executions WHERE partition IN {ps:Array(UInt16)} "
    "GROUP BY partition"
)
_LAST_WM = (
    "SELECT partition, max(ts) FROM sink_watermarks WHERE topic = {topic:String} "
    "AND partition IN {ps:Array(UInt16)} GROUP BY partition"
)


@dataclass
class PartitionClock:
    """Per-partition ingest time: the last assigned ts and the published watermark."""

    last_ts: dict[int, int] = field(default_factory=dict)
    watermark: dict[int, int] = field(default_factory=dict)
    dirty: set[int] = field(default_factory=set)
    # What `sink_watermarks` holds for each partition: written, so a restart continues above it.
    published: dict[int, int] = field(default_factory=dict)

    def bound(self, partitions: set[int]) -> int | None:
        """The visibility bound over these partitions from what was published; None unless
        every one of them has a published watermark."""
        if not partitions or not partitions <= self.published.keys():
            return None
        return min(self.published[p] for p in partitions)

    def stamp(self, partition: int, broker_ts_us: int) -> int:
        """The next ingest_ts for a record of `partition`."""
        ts = rows.clamp_ingest_ts(broker_ts_us, self.last_ts.get(partition, 0))
        self.last_ts[partition] = ts
        return ts

    def advance(self, partition: int, ts: int) -> None:
        """Raise a partition's watermark (and its clamp, so later rows land above it)."""
        if ts > self.watermark.get(partition, 0):
            self.watermark[partition] = ts
            self.dirty.add(partition)
        self.last_ts[partition] = max(self.last_ts.get(partition, 0), ts)


async def load_clock(ch: ClickHouse, clock: PartitionClock, partitions: list[int]) -> None:
    """Continue each partition's clock from what is stored."""
    params = {"ps": partitions, "topic": topics.EXECUTIONS}
    for query in (_LAST_TS, _LAST_WM):
        for partition, ts in await ch.rows(query, params):
            clock.last_ts[partition] = max(clock.last_ts.get(partition, 0), ts)
            clock.watermark[partition] = max(clock.watermark.get(partition, 0), ts)
            if query is _LAST_WM:
                clock.published[partition] = max(clock.published.get(partition, 0), ts)


async def advance_idle(
    consumer: AIOKafkaConsumer, clock: PartitionClock, busy: set[int], now_us: int
) -> None:
    """Advance to now the assigned `executions` partitions that are not `busy` (buffered or in
    flight), not paused and read to their end."""
    for tp in consumer.assignment():
        if tp.topic != topics.EXECUTIONS or tp.partition in busy or tp in consumer.paused():
            continue
        highwater = consumer.highwater(tp)
        if highwater is None:
            continue
        if await consumer.position(tp) >= highwater:
            clock.advance(tp.partition, now_us)


async def publish(ch: ClickHouse, clock: PartitionClock) -> None:
    """Write changed partition watermarks for the API's visibility bound."""
    if not clock.dirty:
        return
    changed = sorted(clock.dirty)
    clock.dirty.clear()
    data = [(topics.EXECUTIONS, p, clock.watermark[p]) for p in changed]
    try:
        await ch.insert("sink_watermarks", data, ("topic", "partition", "ts"))
    except Exception:
        clock.dirty.update(changed)
        raise
    for _topic, partition, ts in data:
        clock.published[partition] = max(clock.published.get(partition, 0), ts)
