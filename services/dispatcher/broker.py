"""The part of a Kafka client the dispatcher uses: aiokafka's, or a double with the same surface.

The dispatcher's loop is one group member over `notifications` and the retry tiers; the journal
and the subscriptions are read by members of no group (assigned partitions, explicit seeks).
Anything that offers these methods with aiokafka's meaning can stand in for the broker.
"""

from typing import Any, Protocol, TypeAlias

from aiokafka.structs import ConsumerRecord, OffsetAndMetadata, TopicPartition

Message: TypeAlias = ConsumerRecord[bytes, bytes]


class Producer(Protocol):
    """Writes records and waits for the broker's acknowledgement."""

    async def start(self) -> None:
        """Connect."""

    async def stop(self) -> None:
        """Flush what is pending and disconnect."""

    async def send_and_wait(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> Any:
        """Write one record; done once the broker has it (raises `KafkaError` otherwise)."""


class Consumer(Protocol):
    """Reads records: as a group member (`subscribe`) or from assigned partitions (`assign`)."""

    async def start(self) -> None:
        """Connect."""

    async def stop(self) -> None:
        """Leave the group, if any, and disconnect."""

    def subscribe(self, topics: list[str], listener: Any = None) -> None:
        """Join the group for `topics`; `listener` hears of assignments and revocations."""

    def assign(self, partitions: list[TopicPartition]) -> None:
        """Read exactly these partitions, outside any group."""

    def seek(self, partition: TopicPartition, offset: int) -> None:
        """Read `partition` from `offset` on."""

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[Message]]:
        """The next records of unpaused partitions, waiting up to `timeout_ms` for some."""

    async def position(self, partition: TopicPartition) -> int:
        """The offset of the next record `getmany` returns for `partition`."""

    async def beginning_offsets(
        self, partitions: list[TopicPartition]
    ) -> dict[TopicPartition, int]:
        """The first offset each partition still holds."""

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        """The offset the next record written to each partition will get."""

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        """The partitions of `topic` as last known (None when unknown)."""

    async def topics(self) -> set[str]:
        """Every topic, from fresh metadata."""

    def pause(self, *partitions: TopicPartition) -> None:
        """Stop returning records of these partitions."""

    def resume(self, *partitions: TopicPartition) -> None:
        """Return records of these partitions again."""

    def paused(self) -> set[TopicPartition]:
        """The partitions paused now."""

    async def commit(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        """Store the group's offsets: where its next member starts reading."""
