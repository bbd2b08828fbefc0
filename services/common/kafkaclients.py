"""The Kafka clients of one cluster, and the API's producer that speaks the AppError tree.

The wiring makes one `KafkaClients` per process and hands it to the services, so every consumer
and producer is configured here. `Producer` wraps the producer of the request path: a broker
that cannot take a record (down, no leader, a timeout) raises `Unavailable`, while a record
the broker refuses (too large, corrupt, an unknown topic) raises the driver's error unchanged,
since it is the record's fault and the caller decides what becomes of it (`is_refused`).
"""

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError

from schemas import topics
from services.common.errors import Unavailable
from services.common.kafka import REFUSED_RECORD_ERRORS, make_producer

# What a client is told is unavailable, by topic.
_LOGS = {
    topics.EXECUTIONS: "event log",
    topics.COMMANDS: "command log",
    topics.NOTIFICATIONS: "notification log",
}


@dataclass(frozen=True)
class KafkaClients:
    """Makes the aiokafka clients of the cluster at `bootstrap`."""

    bootstrap: str

    def producer(self) -> AIOKafkaProducer:
        """A producer acknowledged by every replica, sized for the largest record."""
        return make_producer(self.bootstrap)

    def consumer(self, **options: Any) -> AIOKafkaConsumer:
        """A consumer with the caller's group, offsets and fetch options."""
        return AIOKafkaConsumer(bootstrap_servers=self.bootstrap, **options)

    def request_producer(self) -> "Producer":
        """The producer of the API's request path."""
        return Producer(self.producer())


def is_refused(error: BaseException) -> bool:
    """Whether producing failed because of the record itself (producing it again fails again);
    a broker that is down, without a leader or slow is not the record's fault."""
    if isinstance(error, REFUSED_RECORD_ERRORS):
        return True
    return not isinstance(error, KafkaError | Unavailable)


def translated(error: BaseException, topic: str) -> BaseException:
    """A driver error as the AppError tree has it: the broker's failures are `Unavailable`."""
    if isinstance(error, REFUSED_RECORD_ERRORS) or not isinstance(error, KafkaError | OSError):
        return error
    what = _LOGS.get(topic, f"topic {topic}")
    unavailable = Unavailable(f"The {what} is unavailable ({type(error).__name__}); retry.")
    unavailable.__cause__ = error
    return unavailable


class Producer:
    """An aiokafka producer whose sends raise `Unavailable` when the broker fails them."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer

    async def start(self) -> None:
        """Connect to the cluster (a failure here stops the process starting: not translated)."""
        await self._producer.start()

    async def stop(self) -> None:
        """Flush what is pending and disconnect."""
        await self._producer.stop()

    async def partitions_for(self, topic: str) -> set[int]:
        """The partition numbers of `topic`."""
        try:
            return set(await self._producer.partitions_for(topic))
        except (KafkaError, OSError) as exc:
            raise translated(exc, topic) from exc

    async def send(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        partition: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> "asyncio.Future[Any]":
        """Hand a record to the producer; a future of its metadata once the broker has it."""
        try:
            sent = await self._producer.send(
                topic, value, key=key, partition=partition, headers=headers
            )
        except (KafkaError, OSError) as exc:
            raise translated(exc, topic) from exc
        return _translating(sent, topic)

    async def send_and_wait(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> Any:
        """Produce one record and wait for the broker's acknowledgement."""
        try:
            return await self._producer.send_and_wait(topic, value, key=key, headers=headers)
        except (KafkaError, OSError) as exc:
            raise translated(exc, topic) from exc

    async def send_all(self, topic: str, records: Sequence[tuple[bytes, bytes]]) -> None:
        """Produce (value, key) records together and wait until the broker has every one."""
        try:
            futures = [await self._producer.send(topic, v, key=k) for v, k in records]
            await asyncio.gather(*futures)
        except (KafkaError, OSError) as exc:
            raise translated(exc, topic) from exc


def _translating(sent: "asyncio.Future[Any]", topic: str) -> "asyncio.Future[Any]":
    """A future settled like `sent`, its error translated."""
    out: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def settle(done: "asyncio.Future[Any]") -> None:
        if out.done():
            return
        if done.cancelled():
            out.cancel()
        elif (error := done.exception()) is not None:
            out.set_exception(translated(error, topic))
        else:
            out.set_result(done.result())

    sent.add_done_callback(settle)
    return out
