"""Routes: a subscription's delivery log and redelivery (contract section 6).

A delivery is every attempt under one delivery id: round 0 is the first delivery, each
redelivery opens a round named by its time in ms. Its status is the outcome of its latest attempt
in the latest round; `createdAt` is the time of its first attempt, the order of the listing.
"""

import asyncio
import hashlib
from datetime import datetime
from typing import Any, NamedTuple

import msgspec
from msgspec import Struct

from schemas import topics
from schemas.deliveries import Delivery, DeliveryAttemptView, Outcome, Redelivery
from schemas.notifications import NotificationRecord, RecoverBody, Recovered
from schemas.payloads import DeliveryPayload
from services.api.logs import epoch_ms
from services.api.routing import (
    CURSOR,
    Call,
    Page,
    Route,
    choice_param,
    int_param,
    limit_param,
)
from services.common.clickhouse import ClickHouse
from services.common.clock import iso_ms, now_ms
from services.common.controlplane import SubscriptionRow
from services.common.cursor import decode_cursor, encode_cursor
from services.common.errors import Conflict, InvalidCursor, InvalidInput, NotFound
from services.common.kafka import check_record_size
from services.common.kafkaclients import Producer
from services.common.subscriptions import record

STATUSES = ("delivered", "retrying", "failed")
_json = msgspec.json.Encoder()
_payload = msgspec.json.Decoder(DeliveryPayload)

RECOVER_MAX = 1000
RECOVER_MAX_DAYS = 30
DAY_MS = 24 * 3600 * 1000
# The deliveries whose latest round's last attempt failed within the range, oldest first, with
# what `_ORIGINAL` gives for one.
_FAILED = """
SELECT delivery_id, subscription_id, event_id, argMinIf(payload, (round, attempt), payload != ''),
       max(round)
FROM delivery_attempts FINAL
WHERE project_id = {project:String} AND subscription_id = {subscription:String}
GROUP BY delivery_id, subscription_id, event_id
HAVING argMax(outcome, (round, attempt)) = 'failed'
   AND argMax(attempted_at, (round, attempt))
       BETWEEN fromUnixTimestamp64Milli({since:Int64}, 'UTC')
           AND fromUnixTimestamp64Milli({until:Int64}, 'UTC')
ORDER BY max(attempted_at), delivery_id
LIMIT {limit:UInt32}
"""
# Only light columns here: the page is chosen before any response body is read.
_PAGE = """
SELECT delivery_id, min(attempted_at) AS created_at
FROM delivery_attempts FINAL
WHERE project_id = {{project:String}} AND subscription_id = {{subscription:String}}
GROUP BY delivery_id
HAVING {status} AND {after}
ORDER BY created_at DESC, delivery_id DESC
LIMIT {{limit:UInt32}}
"""
_STATUS = "argMax(outcome, (round, attempt)) = {status:String}"
_AFTER = "(created_at, delivery_id) < (fromUnixTimestamp64Milli({at:Int64}, 'UTC'), {after:String})"
_ATTEMPTS = """
SELECT delivery_id, subscription_id, event_id, event_type, round, attempt, outcome, attempted_at,
       duration_ms, target, response_code, response_body, error, next_attempt_at
FROM delivery_attempts FINAL
WHERE project_id = {project:String} AND subscription_id = {subscription:String}
  AND delivery_id IN {ids:Array(String)}
ORDER BY delivery_id, round, attempt
"""
# The payload of the earliest attempt that carries one (round 0, attempt 1 unless expired).
_ORIGINAL = """
SELECT subscription_id, event_id, argMinIf(payload, (round, attempt), payload != ''), max(round)
FROM delivery_attempts FINAL
WHERE project_id = {project:String} AND delivery_id = {id:String}
GROUP BY subscription_id, event_id
LIMIT 1
"""


class PageRow(NamedTuple):
    """A row of `_PAGE`: a delivery and the time of its first attempt."""

    delivery_id: str
    created_at: datetime


class AttemptRow(NamedTuple):
    """A row of `_ATTEMPTS`: one attempt of a delivery."""

    delivery_id: str
    subscription_id: str
    event_id: str
    event_type: str
    round: int
    attempt: int
    outcome: Outcome
    attempted_at: datetime
    duration_ms: int
    target: str
    response_code: int | None
    response_body: str
    error: str | None
    next_attempt_at: datetime | None


class OriginalRow(NamedTuple):
    """A row of `_ORIGINAL`: what a redelivery sends again."""

    subscription_id: str
    event_id: str
    payload: str
    last_round: int


class DeliveriesCursor(Struct, frozen=True):
    """Where a delivery listing stopped: (createdAt ms, delivery id), newest first."""

    v: int
    h: str
    created: int
    id: str


def page_sql(status: bool, after: bool) -> str:
    """The query choosing a page of delivery ids, from fixed fragments only."""
    return _PAGE.format(status=_STATUS if status else "1", after=_AFTER if after else "1")


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else iso_ms(epoch_ms(moment))


def _attempt(row: AttemptRow) -> DeliveryAttemptView:
    return DeliveryAttemptView(
        round=row.round, attempt=row.attempt, outcome=row.outcome,
        attemptedAt=iso_ms(epoch_ms(row.attempted_at)), durationMs=row.duration_ms,
        target=row.target, responseCode=row.response_code, responseBody=row.response_body,
        error=row.error, nextAttemptAt=_iso(row.next_attempt_at),
    )  # fmt: skip


def group(rows: list[AttemptRow]) -> dict[str, Delivery]:
    """Deliveries from `_ATTEMPTS` rows (sorted by delivery, round, attempt), by id."""
    by_id: dict[str, list[AttemptRow]] = {}
    for row in rows:
        by_id.setdefault(row.delivery_id, []).append(row)
    return {delivery_id: _delivery(attempts) for delivery_id, attempts in by_id.items()}


def _delivery(rows: list[AttemptRow]) -> Delivery:
    attempts = [_attempt(row) for row in rows]
    last, first = attempts[-1], rows[0]
    return Delivery(
        id=first.delivery_id, subscriptionId=first.subscription_id, eventId=first.event_id,
        eventType=first.event_type, status=last.outcome,
        createdAt=iso_ms(min(epoch_ms(row.attempted_at) for row in rows)),
        lastAttemptAt=last.attemptedAt, attempts=attempts,
        nextAttemptAt=last.nextAttemptAt if last.outcome == "retrying" else None,
    )  # fmt: skip


def _binding(*parts: str | None) -> str:
    return hashlib.blake2b(_json.encode(parts), digest_size=8).hexdigest()


async def _attempts(ch: ClickHouse, params: dict[str, Any]) -> list[AttemptRow]:
    """Every attempt of the listed deliveries, in `group`'s order."""
    return [AttemptRow(*row) for row in await ch.rows(_ATTEMPTS, params)]


async def list_deliveries(call: Call) -> Page:
    """A subscription's deliveries, newest first, optionally of one status."""
    project_id, subscription_id = call.principal.project_id, call.path("id")
    if await call.deps.controlplane.get_subscription(project_id, subscription_id) is None:
        raise NotFound(f"No notification subscription {subscription_id} in this project.")
    status = call.query.get("status")
    if status is not None and status not in STATUSES:
        raise InvalidInput.field("status", "Must be delivered, retrying or failed.")
    limit = int_param(call.query, "limit", 50, 1, 100)
    binding = _binding(project_id, subscription_id, status)
    params: dict[str, Any] = {
        "project": project_id, "subscription": subscription_id, "status": status,
        "limit": limit + 1,
    }  # fmt: skip
    if token := call.query.get("cursor"):
        cursor = decode_cursor(token, DeliveriesCursor, call.deps.cursor_key)
        if cursor.h != binding:
            raise InvalidCursor("The cursor was issued for another subscription or filter.")
        params.update({"at": cursor.created, "after": cursor.id})
    ch = call.deps.clickhouse
    rows = await ch.rows(page_sql(status is not None, token is not None), params)
    page, has_more = [PageRow(*r) for r in rows[:limit]], len(rows) > limit
    ids = [r.delivery_id for r in page]
    found = group(await _attempts(ch, {**params, "ids": ids})) if ids else {}
    next_cursor = None
    if has_more:
        last = page[-1]
        cursor = DeliveriesCursor(
            v=1, h=binding, created=epoch_ms(last.created_at), id=last.delivery_id
        )
        next_cursor = encode_cursor(cursor, call.deps.cursor_key)
    items = [found[r.delivery_id] for r in page if r.delivery_id in found]
    return Page(items, next_cursor, has_more)


def _payload_of(delivery_id: str, stored: str) -> DeliveryPayload:
    """The body a delivery first sent, as stored with its first attempt."""
    try:
        return _payload.decode(stored)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise Conflict(
            f"The stored payload of delivery {delivery_id} is not a delivery payload."
        ) from None


def _again(
    row: SubscriptionRow, delivery_id: str, original: OriginalRow, at: int
) -> NotificationRecord:
    """The notification that sends a delivery again: its id, event and first payload, the
    subscription's current destination, and a new round."""
    payload = _payload_of(delivery_id, original.payload)
    round_ms = max(at, original.last_round + 1)  # rounds only grow, even across skewed clocks
    subscription = record(row)
    return NotificationRecord(
        v=1, deliveryId=delivery_id, eventId=original.event_id, subscriptionId=row.id,
        projectId=row.project_id, notificationType=subscription.notificationType,
        destination=subscription.destination, payload=payload,
        createdAtMs=at, secretCiphertext=row.secret_ciphertext, attempt=1, round=round_ms,
        subscriptionVersion=row.version,
    )  # fmt: skip


async def _queue(producer: Producer, notification: NotificationRecord) -> "asyncio.Future[Any]":
    """Hand a notification to the producer; the future of the broker's ack."""
    value = _json.encode(notification)
    key = notification.subscriptionId.encode()
    check_record_size(value, key, "redelivery")
    future: asyncio.Future[Any] = await producer.send(topics.NOTIFICATIONS, value, key=key)
    return future


async def redeliver(call: Call) -> Redelivery:
    """Queue a delivery again: same delivery and event id, the payload first sent, a new round."""
    project_id, delivery_id = call.principal.project_id, call.path("id")
    found = await call.deps.clickhouse.rows(_ORIGINAL, {"project": project_id, "id": delivery_id})
    if not found:
        raise NotFound(f"No delivery {delivery_id} in this project.")
    original = OriginalRow(*found[0])
    if not original.payload:
        raise Conflict(f"The payload of delivery {delivery_id} is not stored; it cannot be sent.")
    row = await call.deps.controlplane.get_subscription(project_id, original.subscription_id)
    if row is None:
        raise Conflict(f"The subscription {original.subscription_id} of this delivery was deleted.")
    notification = _again(row, delivery_id, original, now_ms(call.deps.clock))
    await (await _queue(call.deps.producer, notification))
    return Redelivery(deliveryId=delivery_id, round=notification.round)


def _sendable(stored: str) -> bool:
    """Whether a stored payload can be sent again (recover skips those that cannot)."""
    try:
        return bool(stored) and _payload.decode(stored) is not None
    except (msgspec.DecodeError, msgspec.ValidationError):
        return False


async def recover(call: Call) -> Recovered:
    """Send again every delivery of a subscription whose latest round ended failed in the range,
    each exactly as `redeliver` does (same delivery id, a new round); at most 1,000 a call."""
    body: RecoverBody = call.body
    deps, project_id = call.deps, call.principal.project_id
    row = await deps.controlplane.get_subscription(project_id, call.path("id"))
    if row is None:
        raise NotFound(f"No notification subscription {call.path('id')} in this project.")
    at = now_ms(deps.clock)
    since_ms, until_ms = epoch_ms(body.since), epoch_ms(body.until) if body.until else at
    if since_ms > until_ms:
        raise InvalidInput.field("since", "Must not be after until.")
    if until_ms - since_ms > RECOVER_MAX_DAYS * DAY_MS:
        raise InvalidInput.field("since", f"The range may span at most {RECOVER_MAX_DAYS} days.")
    params = {"project": project_id, "subscription": row.id, "since": since_ms,
              "until": until_ms, "limit": RECOVER_MAX}  # fmt: skip
    found = await deps.clickhouse.rows(
        _FAILED, params, limits=deps.settings.query_limits_for("health"), narrow="a shorter range"
    )
    originals = {delivery_id: OriginalRow(*rest) for delivery_id, *rest in found}
    sendable = [(d, o) for d, o in originals.items() if _sendable(o.payload)]
    futures = [await _queue(deps.producer, _again(row, d, o, at)) for d, o in sendable]
    await asyncio.gather(*futures)
    return Recovered(deliveries=len(futures))


ROUTES = [
    Route(
        "GET",
        "/api/v1/notifications/{id}/deliveries",
        list_deliveries,
        "A subscription's deliveries with their attempts, newest first",
        "notifications",
        scope="notifications:read",
        response=Delivery,
        paged=True,
        params=(
            limit_param(100, 50),
            CURSOR,
            choice_param("status", STATUSES, "the outcome of the latest attempt"),
        ),
    ),
    Route(
        "POST",
        "/api/v1/deliveries/{id}/redeliver",
        redeliver,
        "Send a delivery again (same delivery id, new round)",
        "notifications",
        scope="notifications:write",
        response=Redelivery,
        status=202,
        conflict="the subscription was deleted, or the delivery's payload is no longer stored",
    ),
    Route(
        "POST",
        "/api/v1/notifications/{id}/recover",
        recover,
        "Send again the deliveries that ended failed in a time range (at most 1,000 a call)",
        "notifications",
        scope="notifications:write",
        body=RecoverBody,
        response=Recovered,
        status=202,
    ),
]
