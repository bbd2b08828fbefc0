"""The effects of a batch of records, carried out together when the batch ends.

The engine handles the records a take of the stream gives it one by one, in log order, but
produces their outputs and writes their table rows once for the whole batch: every output
(notifications and alert events) is produced and acknowledged first, then each table row the
batch changed is written once, with its last value, then the offsets are committed (by the
caller). The order of effects is that of a single record: a crash repeats work (with the same
ids, which the dispatcher and the sink deduplicate), it never loses any.

While a batch runs, its rows live in an `Overlay` over each table: reads see what the batch
wrote, writes wait for `flush`. A row written several times in a batch (a project's cost row,
a busy workflow's state) reaches the table and its changelog once. Each row belongs to the
partition of the record that last wrote it. faust tables take the partition of a read or a
write (the changelog's partition, the store's database) from the event being processed, so the
batch calls `enter(partition)` before handling each record and before writing each partition's
rows, and `enter(None)` when it is done. The rows of a partition are written by `write` (one
row at a time into a mapping here; the worker writes a partition's rows to its store and its
changelog together, see `services.alerts.transport.write_rows`).
"""

from collections.abc import Awaitable, Callable, Iterator, MutableMapping, Sequence
from dataclasses import dataclass

from schemas.alerts import AlertEvent
from schemas.notifications import NotificationRecord
from services.alerts.records import Message
from services.alerts.tables import Tables

Produce = Callable[[list[NotificationRecord], list[AlertEvent]], Awaitable[None]]
Enter = Callable[[int | None], None]
SettleOne = Callable[[Message, Callable[[Message], Awaitable[None]]], Awaitable[None]]
Row = tuple[bytes, bytes | None]  # key, value (None: deleted)
WriteRows = Callable[[MutableMapping[bytes, bytes], int, Sequence[Row]], Awaitable[None]]


class Overlay(MutableMapping[bytes, bytes]):
    """A table as the current batch leaves it: its writes and deletes held until `flush`."""

    def __init__(self, table: MutableMapping[bytes, bytes], at: "Cursor") -> None:
        self.table = table
        self.at = at
        self.dirty: dict[bytes, tuple[int, bytes | None]] = {}  # (partition, None if deleted)

    def __getitem__(self, key: bytes) -> bytes:
        if key in self.dirty:
            value = self.dirty[key][1]
            if value is None:
                raise KeyError(key)
            return value
        return self.table[key]

    def get(self, key: bytes, default: bytes | None = None) -> bytes | None:  # type: ignore[override]
        if key in self.dirty:
            value = self.dirty[key][1]
            return default if value is None else value
        return self.table.get(key, default)

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.dirty[key] = (self.at.partition, value)

    def __delitem__(self, key: bytes) -> None:
        self[key]  # KeyError for a row that is not there
        self.dirty[key] = (self.at.partition, None)

    def __iter__(self) -> Iterator[bytes]:
        yield from (k for k, (_, v) in self.dirty.items() if v is not None)
        yield from (k for k in self.table if k not in self.dirty)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def partitions(self) -> set[int]:
        """The partitions of the rows the batch wrote."""
        return {partition for partition, _ in self.dirty.values()}

    def take(self, partition: int) -> list[Row]:
        """The batch's rows of a partition, each once, to be written to the table."""
        rows = [(key, value) for key, (where, value) in self.dirty.items() if where == partition]
        for key, _ in rows:
            del self.dirty[key]
        return rows


async def write_each(
    table: MutableMapping[bytes, bytes], _partition: int, rows: Sequence[Row]
) -> None:
    """Write rows into a mapping one by one (a deleted row goes if it is there)."""
    for key, value in rows:
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value


@dataclass
class Cursor:
    """The partition of the record being handled: its writes are that partition's."""

    partition: int = 0


@dataclass
class Output:
    """What one record of the batch produces."""

    message: Message
    notifications: list[NotificationRecord]
    events: list[AlertEvent]


def anywhere(_partition: int | None) -> None:
    """Tables that take a read or write of any partition as it comes (dicts)."""


class Batch:
    """The outputs and table rows of the records handled since the last `flush`."""

    def __init__(self, durable: Tables, write: WriteRows = write_each) -> None:
        self.at = Cursor()
        self.overlays = (
            Overlay(durable.states, self.at),
            Overlay(durable.subscriptions, self.at),
            Overlay(durable.costs, self.at),
        )
        self.tables = Tables(*self.overlays)
        self.outputs: list[Output] = []
        self.enter: Enter = anywhere
        self.write = write

    def add(
        self,
        message: Message,
        notifications: list[NotificationRecord],
        events: list[AlertEvent],
    ) -> None:
        """Keep a record's outputs for the flush."""
        if notifications or events:
            self.outputs.append(Output(message, notifications, events))

    def begin(self, partition: int) -> None:
        """Handle a record of `partition` next: its reads and writes are that partition's."""
        self.at.partition = partition
        self.enter(partition)

    async def flush(self, produce: Produce, settle: SettleOne) -> None:
        """Produce every output and wait for the acks, then write the rows.

        Outputs go in one go; when that fails (the broker out, or one record's output refused),
        they go again record by record through `settle`, which retries while the broker is out
        and dead-letters the record whose output is refused.
        """
        outputs, self.outputs = self.outputs, []
        if outputs:
            try:
                await produce(
                    [n for o in outputs for n in o.notifications],
                    [e for o in outputs for e in o.events],
                )
            except Exception:  # settled record by record below
                for output in outputs:
                    await settle(output.message, _producing(produce, output))
        for partition in sorted(set().union(*(o.partitions() for o in self.overlays))):
            self.enter(partition)
            for overlay in self.overlays:
                rows = overlay.take(partition)
                if rows:
                    await self.write(overlay.table, partition, rows)
        self.enter(None)


def _producing(produce: Produce, output: Output) -> Callable[[Message], Awaitable[None]]:
    async def work(_message: Message) -> None:
        await produce(output.notifications, output.events)

    return work
