"""A batch of rows on its way to ClickHouse, with the offsets it covers (pure bookkeeping).

Every row remembers the record it came from (`origins`, indexes into `sources`), so that the
records behind rows ClickHouse refuses can be dead-lettered while the others are stored.
"""

import hashlib
from dataclasses import dataclass, field
from typing import Any, cast

from aiokafka.structs import ConsumerRecord, TopicPartition

# The tables a batch writes, in insert order: the keyed (replacing) tables first, `executions`
# last, so that a crash before it leaves nothing half-visible.
TABLES = (
    "delivery_attempts", "alerts", "alert_acks", "execution_payloads", "executions_started",
    "executions",
)  # fmt: skip
_FIELDS = {
    "delivery_attempts": "attempts",
    "alerts": "alerts",
    "alert_acks": "acks",
    "execution_payloads": "payloads",
    "executions_started": "started",
    "executions": "executions",
}


@dataclass
class Batch:
    """Rows of one flush and the Kafka positions they came from."""

    executions: list[tuple[Any, ...]] = field(default_factory=list)
    payloads: list[tuple[Any, ...]] = field(default_factory=list)
    started: list[tuple[Any, ...]] = field(default_factory=list)
    attempts: list[tuple[Any, ...]] = field(default_factory=list)
    alerts: list[tuple[Any, ...]] = field(default_factory=list)
    acks: list[tuple[Any, ...]] = field(default_factory=list)
    sources: list[ConsumerRecord[bytes, bytes]] = field(default_factory=list)
    origins: dict[str, list[int]] = field(default_factory=lambda: {t: [] for t in TABLES})
    rejected: dict[int, str] = field(default_factory=dict)  # source index -> why refused
    next_offsets: dict[TopicPartition, int] = field(default_factory=dict)
    first_offsets: dict[TopicPartition, int] = field(default_factory=dict)
    max_ts: dict[int, int] = field(default_factory=dict)
    keys: set[tuple[str, str]] = field(default_factory=set)
    nbytes: int = 0
    records: int = 0
    dead_letters: int = 0
    opened_at: float = 0.0

    def note(self, tp: TopicPartition, offset: int, ingest_ts: int, size: int) -> None:
        """Account for one consumed record, whatever became of it."""
        self.first_offsets.setdefault(tp, offset)
        self.next_offsets[tp] = offset + 1
        if ingest_ts:
            self.max_ts[tp.partition] = max(self.max_ts.get(tp.partition, 0), ingest_ts)
        self.nbytes += size
        self.records += 1

    def rows(self, table: str) -> list[tuple[Any, ...]]:
        """The rows of one of `TABLES`."""
        return cast(list[tuple[Any, ...]], getattr(self, _FIELDS[table]))

    def add(
        self,
        source: ConsumerRecord[bytes, bytes],
        executions: list[tuple[Any, ...]],
        payloads: list[tuple[Any, ...]],
        started: list[tuple[Any, ...]],
        attempts: list[tuple[Any, ...]],
        alert: tuple[Any, ...] | None = None,
        ack: tuple[Any, ...] | None = None,
    ) -> None:
        """The rows of one record (straight-line: this runs for every record)."""
        index = len(self.sources)
        self.sources.append(source)
        origins = self.origins
        if executions:
            self.executions += executions
            origins["executions"] += [index] * len(executions)
        if payloads:
            self.payloads += payloads
            origins["execution_payloads"] += [index] * len(payloads)
        if started:
            self.started += started
            origins["executions_started"] += [index] * len(started)
        if attempts:
            self.attempts += attempts
            origins["delivery_attempts"] += [index] * len(attempts)
        if alert is not None:
            self.alerts.append(alert)
            origins["alerts"].append(index)
        if ack is not None:
            self.acks.append(ack)
            origins["alert_acks"].append(index)

    def keep_executions(self, known: set[tuple[str, str]]) -> None:
        """Drop the execution rows whose (project, execution) is `known` or repeated."""
        positions = first_unknown(self.executions, known, (0, 5))
        self.executions = [self.executions[i] for i in positions]
        origins = self.origins["executions"]
        self.origins["executions"] = [origins[i] for i in positions]

    def due(self, now: float, max_rows: int, max_bytes: int, max_age_s: float) -> bool:
        """Whether this batch should be flushed now."""
        if not self.records:
            return False
        return self.filled(max_rows, max_bytes) or now - self.opened_at >= max_age_s

    def filled(self, max_rows: int, max_bytes: int) -> bool:
        """Whether this batch has reached its row or byte bound (it takes no more records)."""
        return self.records >= max_rows or self.nbytes >= max_bytes

    def token(self, table: str) -> str:
        """Insert deduplication token: the same offsets give the same token on a retry."""
        ranges = sorted(
            (tp.topic, tp.partition, first, self.next_offsets[tp])
            for tp, first in self.first_offsets.items()
        )
        return hashlib.sha256(f"{table}:{ranges}".encode()).hexdigest()

    def partitions(self, topic: str) -> set[int]:
        """Partition numbers of `topic` this batch touches."""
        return {tp.partition for tp in self.next_offsets if tp.topic == topic}


def first_unknown(
    rows: list[tuple[Any, ...]], known: set[tuple[str, str]], key_at: tuple[int, int]
) -> list[int]:
    """Positions of the rows whose (project, execution) key is not `known` and not repeated
    earlier in `rows`."""
    seen = set(known)
    kept = []
    for position, row in enumerate(rows):
        key = (row[key_at[0]], row[key_at[1]])
        if key in seen:
            continue
        seen.add(key)
        kept.append(position)
    return kept


def drop_duplicates(
    rows: list[tuple[Any, ...]], known: set[tuple[str, str]], key_at: tuple[int, int]
) -> list[tuple[Any, ...]]:
    """Rows whose (project, execution) key is not `known` and not repeated earlier in `rows`."""
    return [rows[i] for i in first_unknown(rows, known, key_at)]
