"""The delivery payload of contract section 6 and the `NotificationRecord` carrying it (pure).

Everything here is a function of its inputs, so a replay builds byte-identical records: ids are
digests (`evt_` per event and subscription, `dlv_` per `evt_`), and `timestamp` is the event
time of the trigger (the execution's `endedAt`, or the alert's time), never the wall clock.
Include flags are applied here; trace spans never go to email or Slack. Numbers computed here
are rendered as JavaScript renders them (`3`, not `3.0`) so that a receiver re-serialising the
body reproduces it.
"""

import base64
import hashlib
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple

import msgspec

from schemas.alerts import Alert, AlertEvent
from schemas.events import ExecutionCompleted
from schemas.limits import BucketLimit, RateLimits, Usage
from schemas.notifications import NotificationRecord, SubscriptionRecord
from schemas.payloads import (
    ALERT_NO_ACTIVITY,
    ALERT_RESOLVED,
    EXECUTION_COMPLETED,
    AlertData,
    DeliveryData,
    DeliveryPayload,
    EventType,
    Links,
)
from services.common.clock import iso_ms, to_ms
from services.common.config import PlanLimits
from services.common.ids import log_id_for

NOTIFICATION_VERSION = 1
SPAN_CHANNELS = frozenset({"webhook"})


class Extras(NamedTuple):
    """What the engine adds beyond the execution: the project's plan and month-to-date cost."""

    plan: str
    limits: PlanLimits
    period_cost: Decimal


_encoder = msgspec.json.Encoder()


def digest_id(prefix: str, *parts: str) -> str:
    """A deterministic id: `prefix` and a lower-case base32 digest of the parts."""
    digest = hashlib.blake2b("\0".join(parts).encode(), digest_size=15).digest()
    return prefix + base64.b32encode(digest).decode().lower()


def event_id(subscription_id: str, key: str) -> str:
    """The `evt_` id of one event for one subscription (stable across replays)."""
    return digest_id("evt_", subscription_id, key)


def delivery_id(evt_id: str) -> str:
    """The `dlv_` id of an event's delivery, reused by every attempt and redelivery."""
    return digest_id("dlv_", evt_id)


def event_type(alert: Alert | None) -> EventType:
    """The delivery type: plain and fired alerts are completions, except the two named ones."""
    if alert is None:
        return EXECUTION_COMPLETED
    if alert.kind == "resolved":
        return ALERT_RESOLVED
    return ALERT_NO_ACTIVITY if alert.rule == "no_activity" else EXECUTION_COMPLETED


def execution_notification(
    project_id: str,
    event: ExecutionCompleted,
    sub: SubscriptionRecord,
    extras: Extras,
    created_ms: int,
) -> NotificationRecord:
    """The notification of a plain subscription for one matching completed execution."""
    evt = event_id(sub.id, f"execution:{event.executionId}")
    data = _data(event.workflowId, event, sub, extras)
    payload = DeliveryPayload(
        id=evt, type=EXECUTION_COMPLETED, timestamp=to_ms(event.endedAt), data=data,
        links=_links(project_id, event),
    )  # fmt: skip
    return _record(project_id, sub, payload, created_ms)


def alert_notification(
    project_id: str,
    alert: Alert,
    event: ExecutionCompleted | None,
    sub: SubscriptionRecord,
    extras: Extras,
    created_ms: int,
) -> NotificationRecord:
    """The notification of an alert, with the triggering execution when there is one."""
    evt = event_id(sub.id, alert_event_key(alert))
    data = msgspec.structs.replace(
        _data(alert.workflowId, event, sub, extras), alert=alert_data(alert)
    )
    links = _links(project_id, event) if event is not None else Links()
    payload = DeliveryPayload(
        id=evt, type=event_type(alert), timestamp=alert.atMs, data=data, links=links
    )
    return _record(project_id, sub, payload, created_ms)


def alert_event_key(alert: Alert) -> str:
    """What names one notification of an alert: the episode's id, the kind and the trigger,
    so that repeats and the resolve of one alert get event ids of their own."""
    return f"alert:{alert.id}:{alert.kind}:{alert.key}"


def alert_event(project_id: str, alert: Alert) -> AlertEvent:
    """The `alert-events` record of one event of an alert episode."""
    return AlertEvent(
        v=1, alertId=alert.id, projectId=project_id, subscriptionId=alert.notificationId,
        workflowId=alert.workflowId, rule=alert.rule, kind=alert.kind, silenced=alert.silenced,
        notified=alert.notify and not alert.silenced, reason=alert.reason,
        observed=alert.observed, threshold=alert.threshold, atMs=alert.atMs,
        firedAtMs=alert.firedAtMs or alert.atMs, notificationCount=alert.notificationCount,
        version=alert.version, executionId=alert.firstExecutionId,
        lastNotifiedAtMs=alert.lastNotifiedAtMs,
    )  # fmt: skip


def alert_data(alert: Alert) -> AlertData:
    """The contract's `alert` object."""
    return AlertData(
        id=alert.id,
        rule=alert.rule,
        reason=alert.reason,
        observed=js_number(alert.observed),
        threshold=js_number(alert.threshold),
        notificationId=alert.notificationId,
    )


def rate_limits(limits: PlanLimits) -> RateLimits[BucketLimit]:
    """The plan's sync and async execution buckets."""
    return RateLimits(
        sync=BucketLimit(limits.sync_per_minute, limits.sync_burst),
        async_=BucketLimit(limits.async_per_minute, limits.async_burst),
    )


def usage(extras: Extras) -> Usage:
    """Month-to-date cost against the plan's monthly limit."""
    limit = extras.limits.monthly_cost_limit_usd
    cost = float(extras.period_cost)
    return Usage(cost, limit, extras.plan, cost >= limit)


def js_number(value: Decimal) -> int | float:
    """A decimal as JSON renders it in JavaScript: integral values without a fraction."""
    return int(value) if value == value.to_integral_value() else float(value)


def encode(record: NotificationRecord) -> bytes:
    """A notification as the JSON on the `notifications` topic."""
    return _encoder.encode(record)


def _data(
    workflow_id: str,
    event: ExecutionCompleted | None,
    sub: SubscriptionRecord,
    extras: Extras,
) -> DeliveryData:
    base = _execution_fields(workflow_id, event)
    optional: dict[str, Any] = {}
    if event is not None and sub.includeFinalOutput:
        optional["finalOutput"] = event.finalOutput
    if event is not None and sub.includeTraceSpans and sub.notificationType in SPAN_CHANNELS:
        optional["traceSpans"] = event.traceSpans
    if sub.includeRateLimits:
        optional["rateLimits"] = rate_limits(extras.limits)
    if sub.includeUsageData:
        optional["usage"] = usage(extras)
    return msgspec.structs.replace(base, **optional) if optional else base


def _execution_fields(workflow_id: str, event: ExecutionCompleted | None) -> DeliveryData:
    if event is None:
        return DeliveryData(
            workflowId=workflow_id, workflowName=None, executionId=None, status=None, level=None,
            trigger=None, startedAt=None, endedAt=None, totalDurationMs=None, cost=None,
            files=None,
        )  # fmt: skip
    return DeliveryData(
        workflowId=event.workflowId,
        workflowName=event.workflowName,
        executionId=event.executionId,
        status=event.status or ("error" if event.level == "error" else "success"),
        level=event.level,
        trigger=event.trigger,
        startedAt=_iso(event.startedAt),
        endedAt=_iso(event.endedAt),
        totalDurationMs=_duration_ms(event),
        cost=event.cost,
        files=event.files,
    )


def _links(project_id: str, event: ExecutionCompleted) -> Links:
    return Links(
        log=f"/v1/logs/{log_id_for(project_id, event.executionId)}",
        execution=f"/v1/logs/executions/{event.executionId}",
    )


def _record(
    project_id: str, sub: SubscriptionRecord, payload: DeliveryPayload, created_ms: int
) -> NotificationRecord:
    return NotificationRecord(
        v=NOTIFICATION_VERSION,
        deliveryId=delivery_id(payload.id),
        eventId=payload.id,
        subscriptionId=sub.id,
        projectId=project_id,
        notificationType=sub.notificationType,
        destination=sub.destination,
        payload=payload,
        createdAtMs=created_ms,
        secretCiphertext=sub.secretCiphertext,
        subscriptionVersion=sub.version,
    )


def _iso(moment: datetime) -> str:
    return iso_ms(to_ms(moment))


def _duration_ms(event: ExecutionCompleted) -> int:
    if event.totalDurationMs is not None:
        return event.totalDurationMs
    return max(0, to_ms(event.endedAt) - to_ms(event.startedAt))
