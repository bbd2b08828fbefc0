"""Routes: a subscription's delivery log and redelivery (contract section 6).

A delivery is every attempt under one delivery id: round 0 is the first delivery, each
redelivery opens a round named by its time in ms. Its status is the outcome of its latest attempt
in the latest round; `createdAt` is the time of its first attempt, the order of the listing.
"""

import hashlib
from datetime import datetime
from typing import Any, NamedTuple

import msgspec
from msgspec import Struct

from schemas import topics
from schemas.deliveries import Delivery, DeliveryAttemptView, Outcome, Redelivery
from schemas.notifications import NotificationRecord
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
from services.common.cursor import decode_cursor, encode_cursor
from services.common.errors import Conflict, InvalidCursor, InvalidInput, NotFound
from services.common.kafka import check_record_size
from services.common.subscriptions import record

STATUSES = ("delivered", "retrying", "failed")
_json = msgspec.json.Encoder()
_payload = msgspec.json.Decoder(DeliveryPayload)

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
    payload = _payload_of(delivery_id, original.payload)
    at = now_ms(call.deps.clock)
    round_ms = max(at, original.last_round + 1)  # rounds only grow, even across skewed clocks
    subscription = record(row)
    notification = NotificationRecord(
        v=1, deliveryId=delivery_id, eventId=original.event_id, subscriptionId=row.id,
        projectId=row.project_id, notificationType=subscription.notificationType,
        destination=subscription.destination, payload=payload,
        createdAtMs=at, secretCiphertext=row.secret_ciphertext, attempt=1, round=round_ms,
        subscriptionVersion=row.version,
    )  # fmt: skip
    value = _json.encode(notification)
    check_record_size(value, row.id.encode(), "redelivery")
    await call.deps.producer.send_and_wait(topics.NOTIFICATIONS, value, key=row.id.encode())
    return Redelivery(deliveryId=delivery_id, round=round_ms)


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
]
