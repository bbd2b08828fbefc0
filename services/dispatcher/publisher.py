"""What the dispatcher writes: attempts' ends, notifications on retry tiers, dead letters.

Every write waits for the broker and is retried until it answers: a record's work is not done
until then, so a stop leaves the record unfinished and a restart redoes it. Only a record the
broker refuses (too large) fails at once, and becomes a dead letter.
"""

import asyncio

import structlog
from aiokafka.errors import KafkaError
from prometheus_client import Counter

from schemas import topics
from schemas.deliveries import DeliveryAttempt
from schemas.notifications import NotificationRecord
from services.common.kafka import REFUSED_RECORD_ERRORS, dead_letter_headers, describe_error
from services.dispatcher import retry
from services.dispatcher.broker import Message, Producer
from services.dispatcher.records import encoder

log = structlog.get_logger(__name__)

DEAD_LETTERS = Counter("cc_dispatcher_dead_letters", "Records sent to deliveries.dlq")
RETRY_DEAD_LETTERS = Counter(
    "cc_dispatcher_retry_dead_letters", "Retry-tier records sent to deliveries.retry.dlq"
)


class Publisher:
    """Writes the dispatcher's records with `producer`."""

    def __init__(self, producer: Producer) -> None:
        self.producer = producer
        self.stopping = False  # once set, a broker error is raised instead of retried

    async def log(self, entry: DeliveryAttempt) -> None:
        """Put an attempt's end on `delivery-log`."""
        await self.produce(topics.DELIVERY_LOG, encoder.encode(entry), entry.deliveryId)

    async def log_starts(self, value: bytes) -> None:
        """Put attempts' starts (an encoded `AttemptsStarted`) on `delivery-log`."""
        await self.produce(topics.DELIVERY_LOG, value, None)

    async def schedule(self, record: NotificationRecord, tier: int) -> None:
        """Put a notification on retry tier `tier`, where it waits until it is due."""
        value = encoder.encode(record)
        await self.produce(topics.retry_tier(tier), value, record.subscriptionId)

    async def dead_letter(self, message: Message, error: BaseException) -> None:
        """Send a record that cannot be handled to its dead-letter topic, with why."""
        is_tier = retry.tier_number(message.topic) is not None
        dlq = topics.RETRY_TIERS_DLQ if is_tier else topics.DELIVERIES_DLQ
        (RETRY_DEAD_LETTERS if is_tier else DEAD_LETTERS).inc()
        log.warning("dispatcher.dead_letter", topic=message.topic, partition=message.partition,
                    offset=message.offset, error=describe_error(error)[:200])  # fmt: skip
        headers = dead_letter_headers(message.topic, message.partition, message.offset, error)
        try:
            await self.produce(dlq, message.value or b"", None, headers)
        except REFUSED_RECORD_ERRORS:  # the value is what the broker refuses: the headers say
            await self.produce(dlq, b"", None, headers)

    async def produce(
        self,
        topic: str,
        value: bytes,
        key: str | None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        """Produce and wait for the broker, retried until it answers."""
        delay = 0.2
        encoded_key = key.encode(errors="replace") if key else None
        while True:
            try:
                await self.producer.send_and_wait(topic, value, key=encoded_key, headers=headers)
                return
            except KafkaError as exc:
                if self.stopping or isinstance(exc, REFUSED_RECORD_ERRORS):
                    raise
                log.warning("dispatcher.produce_retry", topic=topic, error=repr(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
