"""Routes: a subscription's delivery log and redelivery (contract section 6).

A delivery is every attempt under one delivery id: round 0 is the first delivery, each
redelivery opens a round named by its time in ms. Its status is the outcome of its latest attempt
in the latest round; `createdAt` is the time of its first attempt, the order of the listing.
"""

import hashlib
from datetime import datetime
from typing import Any

import msgspec
from aiokafka.errors import KafkaError
from msgspec import Struct

from schemas import topics
from schemas.deliveries import Delivery, DeliveryAttemptView, Redelivery
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
from services.common.clock import iso_ms, now_ms
from services.common.cursor import decode_cursor, encode_cursor
from services.common.errors import Conflict, InvalidCursor, InvalidInput, NotFound, Unavailable
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


def _attempt(row: tuple[Any, ...]) -> DeliveryAttemptView:
    *_, rnd, attempt, outcome, at, duration, target, code, body, error, next_at = row
    return DeliveryAttemptView(
        round=rnd, attempt=attempt, outcome=outcome, attemptedAt=iso_ms(epoch_ms(at)),
        durationMs=duration, target=target, responseCode=code, responseBody=body, error=error,
        nextAttemptAt=_iso(next_at),
    )  # fmt: skip


def group(rows: list[tuple[Any, ...]]) -> dict[str, Delivery]:
    """Deliveries from `_ATTEMPTS` rows (sorted by delivery, round, attempt), by id."""
    by_id: dict[str, list[tuple[Any, ...]]] = {}
    for row in rows:
        by_id.setdefault(row[0], []).append(row)
    return {delivery_id: _delivery(attempts) for delivery_id, attempts in by_id.items()}


def _delivery(rows: list[tuple[Any, ...]]) -> Delivery:
    attempts = [_attempt(row) for row in rows]
    last = attempts[-1]
    delivery_id, subscription_id, event_id, event_type = rows[0][:4]
    return Delivery(
        id=delivery_id, subscriptionId=subscription_id, eventId=event_id, eventType=event_type,
        status=last.outcome, createdAt=iso_ms(min(epoch_ms(row[7]) for row in rows)),
        lastAttemptAt=last.attemptedAt, attempts=attempts,
        nextAttemptAt=last.nextAttemptAt if last.outcome == "retrying" else None,
    )  # fmt: skip


def _binding(*parts: str | None) -> str:
    return hashlib.blake2b(_json.encode(parts), digest_size=8).hexdigest()


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
    page, has_more = rows[:limit], len(rows) > limit
    ids = [r[0] for r in page]
    found = group(await ch.rows(_ATTEMPTS, {**params, "ids": ids})) if ids else {}
    next_cursor = None
    if has_more:
        last = DeliveriesCursor(v=1, h=binding, created=epoch_ms(page[-1][1]), id=page[-1][0])
        next_cursor = encode_cursor(last, call.deps.cursor_key)
    return Page([found[r[0]] for r in page if r[0] in found], next_cursor, has_more)


async def redeliver(call: Call) -> Redelivery:
    """Queue a delivery again: same delivery and event id, the payload first sent, a new round."""
    project_id, delivery_id = call.principal.project_id, call.path("id")
    found = await call.deps.clickhouse.rows(_ORIGINAL, {"project": project_id, "id": delivery_id})
    if not found:
        raise NotFound(f"No delivery {delivery_id} in this project.")
    subscription_id, event_id, payload, last_round = found[0]
    if not payload:
        raise Conflict(f"The payload of delivery {delivery_id} is not stored; it cannot be sent.")
    row = await call.deps.controlplane.get_subscription(project_id, subscription_id)
    if row is None:
        raise Conflict(f"The subscription {subscription_id} of this delivery was deleted.")
    try:
        body = _payload.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise Conflict(
            f"The stored payload of delivery {delivery_id} is not a delivery payload."
        ) from None
    at = now_ms(call.deps.clock)
    round_ms = max(at, last_round + 1)  # rounds only grow, even across skewed API clocks
    subscription = record(row)
    notification = NotificationRecord(
        v=1, deliveryId=delivery_id, eventId=event_id, subscriptionId=row.id,
        projectId=row.project_id, notificationType=subscription.notificationType,
        destination=subscription.destination, payload=body,
        createdAtMs=at, secretCiphertext=row.secret_ciphertext, attempt=1, round=round_ms,
        subscriptionVersion=row.version,
    )  # fmt: skip
    value = _json.encode(notification)
    check_record_size(value, row.id.encode(), "redelivery")
    try:
        await call.deps.producer.send_and_wait(topics.NOTIFICATIONS, value, key=row.id.encode())
    except (KafkaError, OSError) as exc:
        raise Unavailable(f"The notification log is unavailable ({type(exc).__name__}).") from exc
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
