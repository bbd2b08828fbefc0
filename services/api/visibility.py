"""The visibility bound of the gapless cursor: the minimum of the sink's partition watermarks."""

import time

from schemas import topics
from services.common.clickhouse import ClickHouse

_SQL = (
    "SELECT count(), min(ts) FROM (SELECT partition, max(ts) AS ts FROM sink_watermarks "
    "WHERE topic = {topic:String} AND partition < {n:UInt16} GROUP BY partition)"
)


class Visibility:
    """Reads the bound, caching it briefly (it only ever grows, so a stale value is safe)."""

    def __init__(self, clickhouse: ClickHouse, partitions: int, ttl_s: float = 0.05) -> None:
        self._ch = clickhouse
        self._partitions = partitions
        self._ttl_s = ttl_s
        self._value = 0
        self._read_at = float("-inf")

    async def bound(self) -> int:
        """Rows with `ingest_ts` below this are final: nothing can appear behind them."""
        if time.monotonic() - self._read_at < self._ttl_s:
            return self._value
        rows = await self._ch.rows(_SQL, {"topic": topics.EXECUTIONS, "n": self._partitions})
        count, low = rows[0] if rows else (0, 0)
        # A partition without a watermark yet holds everything back.
        fresh = int(low) if count >= self._partitions else 0
        self._value = max(self._value, fresh)
        self._read_at = time.monotonic()
        return self._value
