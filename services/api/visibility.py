"""The visibility bound of the gapless cursor: the minimum of the sink's partition watermarks.

Where the log sink runs in the API's process (`codecourier up`), the bound comes from the
watermarks it published, as they are published: no ClickHouse read on the request path, and
never older than the table. Otherwise (or while that sink does not own every partition) it is
read from `sink_watermarks`, cached briefly.
"""

import time
from collections.abc import Callable

from schemas import topics
from services.common.clickhouse import ClickHouse

_SQL = (
    "SELECT count(), min(ts) FROM (SELECT partition, max(ts) AS ts FROM sink_watermarks "
    "WHERE topic = {topic:String} AND partition < {n:UInt16} GROUP BY partition)"
)
LocalBound = Callable[[int], int | None]
"""The bound over partitions 0..n-1 published by a sink in this process, or None."""


class Visibility:
    """Reads the bound, caching it briefly (it only ever grows, so a stale value is safe)."""

    def __init__(self, clickhouse: ClickHouse, partitions: int, ttl_s: float = 0.05) -> None:
        self._ch = clickhouse
        self._partitions = partitions
        self._ttl_s = ttl_s
        self._value = 0
        self._read_at = float("-inf")
        self._local: LocalBound | None = None

    def follow(self, local: LocalBound) -> None:
        """Take the bound from a log sink in this process."""
        self._local = local

    def unfollow(self, local: LocalBound) -> None:
        """Read ClickHouse again, unless another sink is followed by now."""
        if self._local == local:
            self._local = None

    async def bound(self) -> int:
        """Rows with `ingest_ts` below this are final: nothing can appear behind them."""
        local = self._local(self._partitions) if self._local is not None else None
        if local is not None:
            self._value = max(self._value, local)
            return self._value
        if time.monotonic() - self._read_at < self._ttl_s:
            return self._value
        rows = await self._ch.rows(_SQL, {"topic": topics.EXECUTIONS, "n": self._partitions})
        count, low = rows[0] if rows else (0, 0)
        # A partition without a watermark yet holds everything back.
        fresh = int(low) if count >= self._partitions else 0
        self._value = max(self._value, fresh)
        self._read_at = time.monotonic()
        return self._value
