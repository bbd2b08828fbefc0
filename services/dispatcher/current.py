"""The current state of every subscription, from the compacted `subscriptions` topic.

The dispatcher reads it so that an attempt uses the subscription as it is now, not as it was
when the notification was made: a retry after a secret rotation is signed with the new secret
(and the old one during its grace period), one after a URL change goes to the new URL, and a
subscription that was deleted or turned off (also by a 410) gets no more attempts. The API
broadcasts every subscription to every partition, so partition 0 alone has all of them.
"""

import asyncio
import contextlib
from dataclasses import dataclass, field

import msgspec
import structlog
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition

from schemas import topics
from schemas.destinations import RecordDecoder
from schemas.notifications import NotificationRecord, SubscriptionRecord
from services.dispatcher.broker import Consumer

log = structlog.get_logger(__name__)

DELETED = "The subscription was deleted."
INACTIVE = "The subscription is not active."

_decoder = RecordDecoder(SubscriptionRecord)


@dataclass
class Subscriptions:
    """Subscription id -> its latest record (None once deleted)."""

    known: dict[str, SubscriptionRecord | None] = field(default_factory=dict)

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """One record of the topic: a subscription, its deletion or a tombstone."""
        if key is None:
            return
        subscription_id = key.decode(errors="replace").rpartition("/")[0]
        if value is None:
            self.known[subscription_id] = None
            return
        try:
            record = _decoder.decode(value)
        except Exception:  # not a subscription (a deep value raises RecursionError): skipped
            return
        previous = self.known.get(subscription_id)
        if previous is None or record.version >= previous.version:
            self.known[subscription_id] = None if record.deleted else record

    def refusal(self, record: NotificationRecord) -> str | None:
        """Why a notification must not be sent now (test sends go to inactive ones too)."""
        if record.subscriptionId not in self.known:
            return None  # not seen yet (just created): the record says enough
        current = self.known[record.subscriptionId]
        if current is None:
            return DELETED
        return None if current.active or record.payload.test is True else INACTIVE

    def current(self, record: NotificationRecord) -> NotificationRecord:
        """The notification with its subscription's current destination and secret, when
        those are newer than what it carries."""
        now = self.known.get(record.subscriptionId)
        if now is None or now.version <= record.subscriptionVersion:
            return record
        return msgspec.structs.replace(
            record, destination=now.destination, secretCiphertext=now.secretCiphertext,
            subscriptionVersion=now.version,
        )  # fmt: skip

    async def follow(self, consumer: Consumer, ready: asyncio.Event, stop: asyncio.Event) -> None:
        """Read the topic from the start with `consumer` (a reader outside any group, started
        here), then keep up with it until `stop`."""
        await consumer.start()
        tp = TopicPartition(topics.SUBSCRIPTIONS, 0)
        try:
            consumer.assign([tp])
            consumer.seek(tp, 0)
            (end,) = (await consumer.end_offsets([tp])).values()
            while not stop.is_set():
                batch = await consumer.getmany(tp, timeout_ms=200, max_records=5000)
                for message in batch.get(tp, []):
                    self.apply(message.key, message.value)
                if not ready.is_set() and (await consumer.position(tp)) >= end:
                    ready.set()
                    log.info("dispatcher.subscriptions_read", known=len(self.known))
        except KafkaError as exc:  # deliveries go on with what the records carry
            log.warning("dispatcher.subscriptions_unavailable", error=repr(exc))
            ready.set()
        finally:
            with contextlib.suppress(Exception):
                await consumer.stop()
