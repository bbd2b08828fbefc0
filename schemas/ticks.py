"""The records on `ticks`: event time for the alert engine's time-only rules."""

from msgspec import Struct


class Tick(Struct, frozen=True, tag="tick", tag_field="kind"):
    """A record on `ticks`: event time for one partition, valid once executions reach an offset."""

    v: int
    partition: int
    atMs: int
    executionsEnd: int
