"""What the dispatcher reads off a notification record, and the `delivery-log` record it writes
for an attempt (pure)."""

from functools import lru_cache
from urllib.parse import urlsplit

import msgspec

from schemas.deliveries import DeliveryAttempt, Outcome
from schemas.destinations import EmailDestination, RecordDecoder, WebhookDestination
from schemas.notifications import NotificationRecord
from services.common.sealing import unseal
from services.dispatcher.channels.base import Result, Secrets

# What the delivery log shows of a destination whose address is a secret.
TARGETS = {
    "slack": "slack incoming webhook",
    "pagerduty": "pagerduty events api",
    "teams": "teams webhook",
    "discord": "discord webhook",
}

_decoder = RecordDecoder(NotificationRecord)
encoder = msgspec.json.Encoder(decimal_format="number")


def decode(value: bytes | None) -> NotificationRecord | Exception:
    """A topic record as a notification, or why it is not one (whatever raised: a deep value
    raises RecursionError, not a msgspec error)."""
    try:
        return _decoder.decode(value or b"")
    except Exception as exc:
        return exc


def lane_of(record: NotificationRecord) -> str:
    """The destination a record is bounded by: a webhook's origin, else its subscription."""
    if isinstance(record.destination, WebhookDestination):
        return _webhook_lane(record.destination.url)
    return f"{record.notificationType} {record.subscriptionId}"


# A lane's records share their URL: parsing it for each record cost about 2 us of the some 250
# a delivery takes (bench_dispatch), 0.1 us from the cache.
@lru_cache(maxsize=4096)
def _webhook_lane(url: str) -> str:
    parts = urlsplit(url)
    return f"webhook {parts.scheme}://{parts.netloc.rpartition('@')[2]}"


@lru_cache(maxsize=4096)
def _webhook_target(url: str) -> str:
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname or ''}{port}"


def target_of(record: NotificationRecord) -> str:
    """The receiver as the delivery log shows it: no secrets, no query strings."""
    destination = record.destination
    if isinstance(destination, WebhookDestination):
        return _webhook_target(destination.url)
    if isinstance(destination, EmailDestination):
        return ",".join(destination.recipients)
    return TARGETS.get(record.notificationType, record.notificationType)


def open_secrets(record: NotificationRecord, key: bytes, now_ms: int) -> Secrets:
    """The record's sealed secrets, opened; the previous one only while its grace lasts."""
    current = (
        unseal(record.secretCiphertext, key, record.subscriptionId)
        if record.secretCiphertext
        else None
    )
    previous = None
    destination = record.destination
    if isinstance(destination, WebhookDestination):
        sealed, until = destination.previousSecretCiphertext, destination.previousSecretUntilMs
        if sealed and (until or 0) > now_ms:
            previous = unseal(sealed, key, record.subscriptionId)
    return Secrets(current=current, previous=previous)


def attempt_record(
    record: NotificationRecord,
    result: Result,
    outcome: Outcome,
    started_ms: int,
    duration_ms: int,
    next_attempt_ms: int | None,
) -> DeliveryAttempt:
    """The `delivery-log` record of one attempt."""
    first = record.attempt == 1
    return DeliveryAttempt(
        v=1, deliveryId=record.deliveryId, eventId=record.eventId, eventType=record.payload.type,
        subscriptionId=record.subscriptionId, projectId=record.projectId,
        notificationType=record.notificationType, round=record.round, attempt=record.attempt,
        outcome=outcome, attemptedAtMs=started_ms, durationMs=duration_ms,
        target=target_of(record), responseCode=result.status, responseBody=result.body,
        error=result.error, nextAttemptAtMs=next_attempt_ms,
        payload=msgspec.Raw(encoder.encode(record.payload) if first else b"null"),
    )  # fmt: skip
