"""PagerDuty channel: an Events API v2 event posted to `CC_PAGERDUTY_URL`.

A fired alert is a `trigger` whose `dedup_key` is the alert id (`data.alert.id`), so repeats of
one alert update one incident; `workflow.alert.resolved` is a `resolve` with the same key. A
delivery without an alert (a test send) triggers with its event id as the key. The severity
follows the rule (`SEVERITIES`): failures are `error`, slowness and cost `warning`, a test
`info`. Within PagerDuty's limits: a summary of at most 1,024 characters, a dedup key of at
most 255, and bounded custom details. Trace spans are never sent.

The routing key is the secret (`Secrets.current`): errors never contain it. PagerDuty answers
202; 429 and 5xx are retried, 400 (an invalid event) is final, as for any webhook.
"""

from typing import Any, Final

import msgspec

from schemas.notifications import NotificationRecord
from schemas.payloads import ALERT_RESOLVED, AlertData, DeliveryPayload
from services.common.clock import iso_ms
from services.dispatcher.channels import http, webhook
from services.dispatcher.channels.base import Context, Result, Secrets, fit
from services.dispatcher.channels.summary import Summary, one_line, summarize

SUMMARY_CHARS: Final = 1024
DEDUP_KEY_CHARS: Final = 255
SOURCE_CHARS: Final = 255
DETAIL_CHARS: Final = 1024  # of each custom detail
CLIENT: Final = "CodeCourier"
SEVERITIES: Final[dict[str, str]] = {
    "consecutive_failures": "error",
    "failure_rate": "error",
    "error_count": "error",
    "no_activity": "error",
    "latency_threshold": "warning",
    "latency_spike": "warning",
    "cost_threshold": "warning",
}

_encoder = msgspec.json.Encoder(decimal_format="number")


def _alert(payload: DeliveryPayload) -> AlertData | None:
    alert = payload.data.alert
    return alert if isinstance(alert, AlertData) else None


def dedup_key(payload: DeliveryPayload) -> str:
    """The incident's key: the alert id, else (a test send) the event id."""
    alert = _alert(payload)
    return fit(alert.id if alert is not None else payload.id, DEDUP_KEY_CHARS)


def severity(payload: DeliveryPayload) -> str:
    """The PagerDuty severity of a delivery, by its alert's rule."""
    alert = _alert(payload)
    if alert is not None:
        return SEVERITIES.get(alert.rule, "error")
    return "error" if payload.data.level == "error" else "info"


def event(record: NotificationRecord, routing_key: str, ctx: Context) -> dict[str, Any]:
    """The Events API v2 body of a notification."""
    payload = record.payload
    base = {"routing_key": routing_key, "dedup_key": dedup_key(payload)}
    if payload.type == ALERT_RESOLVED:
        return {**base, "event_action": "resolve"}
    summary = summarize(payload, ctx.public_base_url)
    alert = _alert(payload)
    body: dict[str, Any] = {
        **base,
        "event_action": "trigger",
        "payload": {
            "summary": fit(one_line(_headline(summary)), SUMMARY_CHARS),
            "source": fit(payload.data.workflowId or "codecourier", SOURCE_CHARS),
            "severity": severity(payload),
            "timestamp": iso_ms(payload.timestamp),
            "component": fit(summary.workflow, SOURCE_CHARS),
            "class": alert.rule if alert is not None else "test",
            "custom_details": details(payload, summary),
        },
        "client": CLIENT,
        "client_url": ctx.public_base_url,
    }
    if summary.log_url:
        body["links"] = [{"href": summary.log_url, "text": "View log"}]
    return body


def _headline(summary: Summary) -> str:
    return f"{summary.title}: {summary.reason}" if summary.reason else summary.title


def details(payload: DeliveryPayload, summary: Summary) -> dict[str, Any]:
    """The incident's custom details: the facts and the alert's figures, each bounded."""
    found: dict[str, Any] = {"workflowId": payload.data.workflowId, "workflow": summary.workflow}
    if summary.execution_id:
        found["executionId"] = summary.execution_id
    found |= {label.lower(): value for label, value in summary.facts}
    alert = _alert(payload)
    if alert is not None:
        found |= {"alertId": alert.id, "rule": alert.rule, "reason": summary.reason}
        found |= {"observed": alert.observed, "threshold": alert.threshold}
    return {k: fit(v, DETAIL_CHARS) if isinstance(v, str) else v for k, v in found.items()}


async def send(record: NotificationRecord, secrets: Secrets, ctx: Context) -> Result:
    """POST the event to the Events API."""
    key = secrets.current
    if not key:
        return Result(delivered=False, error="the PagerDuty routing key is missing")
    body = _encoder.encode(event(record, key, ctx))
    headers = {"Content-Type": "application/json", "User-Agent": webhook.USER_AGENT}
    return await http.post(ctx, ctx.pagerduty_url, body, headers, [key])
