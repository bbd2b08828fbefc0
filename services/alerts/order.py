"""Each record of a log without gaps reaches the engine once per assignment, in log order.

faust's fetcher does not promise that across rebalances. It seeks a partition back to its
committed offset more than once while taking it over (after its tables recover, and whenever
it is asked for records while its flow is stopped), and records fetched before such a seek are
still handed on after it. Its bookkeeping then sees offsets jump: it drops the records it reads
again below the newest offset it handed on, and counts the offsets it jumped over as processed,
so they were committed without ever being read (records handed over by a killed member were
lost that way). Two things keep the engine exact:
- the consumer counts a jump as processed only on a compacted topic, where offsets are missing
  by design (`services.alerts.transport.Consumer`);
- `Order` checks every record of `executions` and `ticks` against where its partition must go
  on, from the group's committed offset at the assignment: the next record is handled; one
  already handled (read again) is acknowledged and skipped; one further on is skipped, not
  acknowledged (its offset is never committed past a record not handled), and the partition is
  read again from the record the engine waits for (at most once per `rewind_s`, while the
  records fetched before it still come).
Records of the compacted topics go through as they come: their versions are idempotent, and
they are also read ahead at every assignment.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from schemas import topics

log = structlog.get_logger(__name__)

GAPLESS = frozenset({topics.EXECUTIONS, topics.TICKS})

Partition = tuple[str, int]  # (topic, partition)


@dataclass
class Admitted:
    """What becomes of a batch's events."""

    taken: list[Any] = field(default_factory=list)  # handled, in order, then acknowledged
    settled: list[Any] = field(default_factory=list)  # acknowledged only: handled before
    rewind: dict[Any, int] = field(default_factory=dict)  # faust TP -> offset to read again


class Order:
    """Where each assigned partition of `GAPLESS` goes on (pure: the caller passes the time)."""

    def __init__(self, rewind_s: float = 1.0) -> None:
        self.rewind_s = rewind_s
        self.starts: dict[Partition, int] = {}  # as read at the assignment
        self.next: dict[Partition, int] = {}
        # Without the committed offsets (the broker did not answer at the assignment), the
        # first record read of a partition is where it goes on, as faust's seek put it.
        self.learning = True
        self._rewound: dict[Partition, float] = {}

    def assign(self, starts: Mapping[Partition, int] | None) -> None:
        """The group's committed offsets (or the log start) of the assigned partitions; None
        when they could not be read."""
        self.starts = dict(starts or {})
        self.next = dict(self.starts)
        self.learning = starts is None
        self._rewound.clear()

    def revoke(self) -> None:
        """The partitions are gone: records of them still to come belong to their next owner."""
        self.starts.clear()
        self.next.clear()
        self.learning = False

    def admit(self, events: Sequence[Any], now: float) -> Admitted:
        """Sort a batch's events (faust events: `.message` has topic, partition, offset, tp)."""
        out = Admitted()
        ahead: dict[Partition, Any] = {}
        for event in events:
            message = event.message
            if message.topic not in GAPLESS:
                out.taken.append(event)
                continue
            key = (message.topic, message.partition)
            want = self.next.get(key)
            if want is None and self.learning:
                want = message.offset
            if want is None:  # not ours (any more): left to the partition's owner
                continue
            if message.offset == want:
                out.taken.append(event)
                self.next[key] = want + 1
                ahead.pop(key, None)
            elif message.offset < want:
                out.settled.append(event)
            else:
                ahead[key] = message.tp
        for key, tp in ahead.items():
            if now - self._rewound.get(key, float("-inf")) >= self.rewind_s:
                self._rewound[key] = now
                out.rewind[tp] = self.next[key]
                log.warning("alerts.read_again", partition=f"{key[0]}/{key[1]}",
                            offset=self.next[key])  # fmt: skip
        return out
