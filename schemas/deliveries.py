"""Deliveries (contract section 6): the attempts the dispatcher records on `delivery-log`, and
the delivery log as the API shows it.

Two kinds of record share the topic (field `kind`): `AttemptsStarted`, written and acknowledged
before requests go out, and `DeliveryAttempt` (key = delivery id), how an attempt ended. A start
with no end is an attempt a stopped dispatcher left in flight: the next one counts it as made
(the receiver may have it) instead of making it again.
"""

from typing import Annotated, Literal

import msgspec
from msgspec import Meta, Struct

Outcome = Literal["delivered", "retrying", "failed"]
RESPONSE_BODY_LIMIT = 16 * 1024
# Bounds of the ClickHouse columns, checked when an attempt is decoded: a value outside them is a
# poison record for the log sink, not a stuck insert.
Millis = Annotated[int, Meta(ge=0, lt=2**43)]  # DateTime64(3) ends in 2299


class DeliveryAttempt(Struct, frozen=True, tag="attempt", tag_field="kind"):
    """One attempt to deliver a notification (key = delivery id on `delivery-log`).

    `round` is 0 for the first delivery and the redelivery time (ms) for a redelivery, so that
    attempts of different rounds never share a number. `payload` is the delivered body as sent,
    carried by the first attempt of each round so a redelivery can send it again (null on the
    others; `Raw | None` would not decode). `target` names
    the receiver without secrets (a host, or the recipients of an email).
    """

    v: int
    deliveryId: str
    eventId: str
    eventType: str
    subscriptionId: str
    projectId: str
    notificationType: str
    round: Annotated[int, Meta(ge=0)]
    attempt: Annotated[int, Meta(ge=1, lt=2**16)]
    outcome: Outcome
    attemptedAtMs: Millis
    durationMs: Annotated[int, Meta(ge=0, lt=2**32)]
    target: str
    responseCode: Annotated[int, Meta(ge=0, lt=2**16)] | None = None
    responseBody: str = ""
    error: str | None = None
    nextAttemptAtMs: Millis | None = None
    payload: msgspec.Raw = msgspec.Raw(b"null")  # JSON null when absent


class AttemptsStarted(Struct, frozen=True, tag="started", tag_field="kind"):
    """Attempts about to be made, `[delivery id, round, attempt]` each; not in ClickHouse.

    One record holds the attempts a dispatcher starts together (any key on `delivery-log`), so
    that the journal costs one record per batch of attempts, not one per attempt.
    """

    v: int
    attempts: list[tuple[str, Annotated[int, Meta(ge=0)], Annotated[int, Meta(ge=1, lt=2**16)]]]
    startedAtMs: Millis


LogEntry = DeliveryAttempt | AttemptsStarted


class DeliveryAttemptView(Struct, frozen=True):
    """One attempt of a delivery as the API shows it."""

    round: int
    attempt: int
    outcome: Outcome
    attemptedAt: str
    durationMs: int
    target: str
    responseCode: int | None
    responseBody: str
    error: str | None
    nextAttemptAt: str | None


class Delivery(Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A delivery of one event to one subscription, with every attempt, oldest first."""

    id: str
    subscriptionId: str
    eventId: str
    eventType: str
    status: Outcome
    createdAt: str
    lastAttemptAt: str
    nextAttemptAt: str | None = None
    attempts: list[DeliveryAttemptView]


class Redelivery(Struct, frozen=True):
    """A redelivery was queued: the same delivery id in a new round."""

    deliveryId: str
    round: int
