"""The engine's outputs as faust topics: notifications, alert events, and dead letters with
their headers."""

import asyncio
from collections.abc import Sequence
from typing import Any

import msgspec
from aiokafka.errors import KafkaError, MessageSizeTooLargeError

from schemas import topics
from schemas.alerts import AlertEvent
from schemas.notifications import NotificationRecord
from services.alerts import payload
from services.alerts.engine import RecordEvents, Send
from services.alerts.records import DeadLetter, Message
from services.alerts.transport import AlertsApp
from services.common.errors import Unavailable


def raw_topic(app: AlertsApp, name: str) -> Any:
    """A topic of the app that takes and gives bytes as they are."""
    return app.topic(
        name, internal=False, key_type=bytes, value_type=bytes,
        key_serializer="raw", value_serializer="raw",
    )  # fmt: skip


def sender(app: AlertsApp) -> Send:
    """Produce notifications and wait for their acks; broker errors become Unavailable."""
    out = raw_topic(app, topics.NOTIFICATIONS)

    async def send(records: Sequence[NotificationRecord]) -> None:
        try:
            futures = [
                await out.send(key=r.subscriptionId.encode(), value=payload.encode(r))
                for r in records
            ]
            await asyncio.gather(*futures)
        except MessageSizeTooLargeError:
            raise  # this record's notifications, not the broker: it is dead-lettered
        except (KafkaError, OSError, TimeoutError) as exc:
            raise Unavailable(f"notifications not produced: {exc!r}") from exc

    return send


_encode_event = msgspec.json.Encoder(decimal_format="number").encode


def event_sender(app: AlertsApp) -> RecordEvents:
    """Produce alert events (key: the alert id) and wait for their acks; broker errors become
    Unavailable."""
    out = raw_topic(app, topics.ALERT_EVENTS)

    async def record(events: Sequence[AlertEvent]) -> None:
        try:
            futures = [
                await out.send(key=e.alertId.encode(), value=_encode_event(e)) for e in events
            ]
            await asyncio.gather(*futures)
        except MessageSizeTooLargeError:
            raise  # bounded records: never the broker's fault; dead-lettered like a notification
        except (KafkaError, OSError, TimeoutError) as exc:
            raise Unavailable(f"alert events not produced: {exc!r}") from exc

    return record


def dead_letter_sender(app: AlertsApp) -> DeadLetter:
    """Copy a record to `alerts.dlq` with the error in its headers; broker errors become
    Unavailable."""
    out = raw_topic(app, topics.ALERTS_DLQ)

    async def dead_letter(message: Message, reason: str) -> None:
        headers = {
            "cc-consumer": b"alerts",
            "cc-error": reason.encode(errors="replace"),
            "cc-source": f"{message.topic}/{message.partition}/{message.offset}".encode(),
        }
        try:
            try:
                await (await out.send(key=message.key, value=message.value, headers=headers))
            except MessageSizeTooLargeError:  # the headers made it too large: the error, not it
                headers["cc-truncated"] = b"true"
                await (await out.send(key=message.key, value=b"", headers=headers))
        except (KafkaError, OSError, TimeoutError) as exc:
            raise Unavailable(f"dead letter not produced: {exc!r}") from exc

    return dead_letter
