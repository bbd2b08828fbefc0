"""A batch of rows on its way to ClickHouse, with the offsets it covers (pure bookkeeping)."""

import hashlib
from dataclasses import dataclass, field
from typing import Any

from aiokafka.structs import TopicPartition


@dataclass
class Batch:
    """Rows of one flush and the Kafka positions they came from."""

    executions: list[tuple[Any, ...]] = field(default_factory=list)
    payloads: list[tuple[Any, ...]] = field(default_factory=list)
    started: list[tuple[Any, ...]] = field(default_factory=list)
    attempts: list[tuple[Any, ...]] = field(default_factory=list)
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

    def due(self, now: float, max_rows: int, max_bytes: int, max_age_s: float) -> bool:
        """Whether this batch should be flushed now."""
        if not self.records:
            return False
        return (
            self.records >= max_rows
            or self.nbytes >= max_bytes
            or now - self.opened_at >= max_age_s
        )

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


def drop_duplicates(
    rows: list[tuple[Any, ...]], known: set[tuple[str, str]], key_at: tuple[int, int]
) -> list[tuple[Any, ...]]:
    """Rows whose (project, execution) key is not `known` and not repeated earlier in `rows`."""
    seen = set(known)
    kept = []
    for row in rows:
        key = (row[key_at[0]], row[key_at[1]])
        if key in seen:
            continue
        seen.add(key)
        kept.append(row)
    return kept
