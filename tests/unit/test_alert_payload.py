"""The delivery payload and notification records the alert engine produces (pure)."""

import json
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from typing import Any

import msgspec
import pytest

from schemas.alerts import Alert
from schemas.destinations import RecordDecoder, WebhookDestination
from schemas.events import Cost
from schemas.notifications import NotificationRecord, SubscriptionRecord
from schemas.payloads import AlertData
from services.alerts import payload
from services.alerts.payload import Extras
from services.common.config import DEFAULT_PLANS
from services.common.ids import log_id_for
from tests.factories import execution

ENDED = datetime(2026, 3, 1, 12, 0, 5, 250_000, tzinfo=UTC)
ENDED_MS = int(ENDED.timestamp() * 1000)
EXTRAS = Extras("pro", DEFAULT_PLANS["pro"], Decimal("12.5"))


def sub(**fields: Any) -> SubscriptionRecord:
    base: dict[str, Any] = {
        "v": 1, "id": "ntf_1", "projectId": "prj_1", "version": 1, "deleted": False,
        "notificationType": "webhook", "workflowIds": [], "allWorkflows": True,
        "levelFilter": [], "triggerFilter": [], "includeFinalOutput": False,
        "includeTraceSpans": False, "includeRateLimits": False, "includeUsageData": False,
        "active": True, "createdAtMs": 1,
        "destination": {"type": "webhook", "url": "https://example.com/h"},
        "secretCiphertext": "sealed",
    }  # fmt: skip
    return msgspec.convert({**base, **fields}, SubscriptionRecord)


# One failed execution; the runtime did not report its duration (the payload works it out).
event = partial(
    execution, "exe_1", "wf_1", ended=ENDED, duration_ms=2000, level="error", totalDurationMs=None
)


def alert(**fields: Any) -> Alert:
    base: dict[str, Any] = {
        "id": "alr_x", "kind": "fired", "rule": "consecutive_failures",
        "reason": "3 consecutive failures since the last success (threshold: 3).",
        "observed": Decimal(3), "threshold": Decimal(3), "notificationId": "ntf_1",
        "workflowId": "wf_1", "atMs": ENDED_MS + 7, "executionId": "exe_1",
    }  # fmt: skip
    return Alert(**{**base, **fields})


def body(record: NotificationRecord) -> dict[str, Any]:
    """The payload as the topic carries it."""
    decoded: dict[str, Any] = json.loads(payload.encode(record))["payload"]
    return decoded


@pytest.mark.parametrize(
    ("the_alert", "expected"),
    [
        (None, "workflow.execution.completed"),
        (alert(), "workflow.execution.completed"),
        (alert(rule="latency_spike"), "workflow.execution.completed"),
        (alert(rule="no_activity"), "workflow.alert.no_activity"),
        (alert(kind="resolved"), "workflow.alert.resolved"),
        (alert(kind="resolved", rule="no_activity"), "workflow.alert.resolved"),
    ],
)
def test_event_type_follows_the_contract(the_alert: Alert | None, expected: str) -> None:
    assert payload.event_type(the_alert) == expected


def test_ids_are_stable_per_event_and_subscription() -> None:
    first = payload.execution_notification("prj_1", event(), sub(), EXTRAS, 1)
    again = payload.execution_notification("prj_1", event(), sub(), EXTRAS, 999)
    other_sub = payload.execution_notification("prj_1", event(), sub(id="ntf_2"), EXTRAS, 1)
    other_event = payload.execution_notification("prj_1", event(executionId="e2"), sub(), EXTRAS, 1)
    assert first.eventId == again.eventId and first.deliveryId == again.deliveryId
    assert first.eventId.startswith("evt_") and first.deliveryId.startswith("dlv_")
    assert first.eventId == body(first)["id"]
    assert first.deliveryId == payload.delivery_id(first.eventId)
    assert len({first.eventId, other_sub.eventId, other_event.eventId}) == 3


def test_an_alert_and_a_plain_delivery_of_one_execution_have_different_ids() -> None:
    plain = payload.execution_notification("prj_1", event(), sub(), EXTRAS, 1)
    alerted = payload.alert_notification("prj_1", alert(), event(), sub(), EXTRAS, 1)
    assert plain.eventId != alerted.eventId
    assert alerted.eventId == payload.event_id("ntf_1", payload.alert_event_key(alert()))


def test_execution_payload_carries_the_contract_fields() -> None:
    cost = Cost(total=0.25, input=0.1, output=0.15)
    record = payload.execution_notification(
        "prj_1", event(cost=cost, files=[{"name": "a.txt"}], workflowName="Nightly"), sub(),
        EXTRAS, 42,
    )  # fmt: skip
    assert record.subscriptionId == "ntf_1" and record.projectId == "prj_1"
    assert record.notificationType == "webhook" and record.createdAtMs == 42
    assert record.destination == WebhookDestination(url="https://example.com/h")
    assert record.secretCiphertext == "sealed"
    assert body(record) == {
        "id": record.eventId,
        "type": "workflow.execution.completed",
        "timestamp": ENDED_MS,
        "data": {
            "workflowId": "wf_1", "workflowName": "Nightly", "executionId": "exe_1",
            "status": "error", "level": "error", "trigger": "api",
            "startedAt": "2026-03-01T12:00:03.250Z", "endedAt": "2026-03-01T12:00:05.250Z",
            "totalDurationMs": 2000, "cost": {"total": 0.25, "input": 0.1, "output": 0.15},
            "files": [{"name": "a.txt"}],
        },
        "links": {
            "log": f"/v1/logs/{log_id_for('prj_1', 'exe_1')}",
            "execution": "/v1/logs/executions/exe_1",
        },
    }  # fmt: skip


def test_status_and_duration_fall_back_as_the_logs_do() -> None:
    data = body(payload.execution_notification("prj_1", event(level="info"), sub(), EXTRAS, 1))
    assert data["data"]["status"] == "success" and data["data"]["totalDurationMs"] == 2000
    given = event(status="cancelled", totalDurationMs=5)
    data = body(payload.execution_notification("prj_1", given, sub(), EXTRAS, 1))
    assert data["data"]["status"] == "cancelled" and data["data"]["totalDurationMs"] == 5


def test_optional_fields_appear_only_when_included() -> None:
    rich = event(finalOutput={"answer": 42}, traceSpans=[{"id": "s1"}])
    bare = body(payload.execution_notification("prj_1", rich, sub(), EXTRAS, 1))["data"]
    assert not {"finalOutput", "traceSpans", "rateLimits", "usage", "alert"} & set(bare)
    flags = {
        "includeFinalOutput": True, "includeTraceSpans": True,
        "includeRateLimits": True, "includeUsageData": True,
    }  # fmt: skip
    full = body(payload.execution_notification("prj_1", rich, sub(**flags), EXTRAS, 1))["data"]
    assert full["finalOutput"] == {"answer": 42}
    assert full["traceSpans"] == [{"id": "s1"}]
    assert full["rateLimits"] == {
        "sync": {"requestsPerMinute": 60, "maxBurst": 120},
        "async": {"requestsPerMinute": 200, "maxBurst": 400},
    }
    assert full["usage"] == {
        "currentPeriodCost": 12.5, "limit": 100.0, "plan": "pro", "isExceeded": False,
    }  # fmt: skip


def test_an_included_final_output_that_is_null_is_sent_as_null() -> None:
    data = body(
        payload.execution_notification("prj_1", event(), sub(includeFinalOutput=True), EXTRAS, 1)
    )["data"]
    assert "finalOutput" in data and data["finalOutput"] is None


@pytest.mark.parametrize("channel", ["email", "slack", "pagerduty", "teams", "discord"])
def test_trace_spans_never_go_to_email_or_chat(channel: str) -> None:
    spans = event(traceSpans=[{"id": "s1"}])
    record = payload.execution_notification(
        "prj_1", spans, sub(notificationType=channel, includeTraceSpans=True), EXTRAS, 1
    )
    assert "traceSpans" not in body(record)["data"]


def test_usage_is_exceeded_at_the_limit() -> None:
    at_limit = Extras("free", DEFAULT_PLANS["free"], Decimal("10"))
    assert payload.usage(at_limit).isExceeded
    assert not payload.usage(at_limit._replace(period_cost=Decimal("9.99"))).isExceeded


def test_alert_payload_carries_the_alert_object() -> None:
    record = payload.alert_notification("prj_1", alert(), event(), sub(), EXTRAS, 1)
    sent = body(record)
    assert sent["type"] == "workflow.execution.completed"
    assert sent["timestamp"] == ENDED_MS + 7
    assert sent["data"]["executionId"] == "exe_1"
    assert sent["data"]["alert"] == {
        "id": "alr_x", "rule": "consecutive_failures",
        "reason": "3 consecutive failures since the last success (threshold: 3).",
        "observed": 3, "threshold": 3, "notificationId": "ntf_1",
    }  # fmt: skip
    assert sent["links"]["execution"] == "/v1/logs/executions/exe_1"


def test_an_alert_without_an_execution_names_only_the_workflow() -> None:
    idle = alert(rule="no_activity", observed=Decimal("1.02"), threshold=Decimal("1.0"),
                 executionId=None)  # fmt: skip
    sent = body(payload.alert_notification("prj_1", idle, None, sub(), EXTRAS, 1))
    assert sent["type"] == "workflow.alert.no_activity"
    assert sent["links"] == {}
    data = sent["data"]
    assert data["workflowId"] == "wf_1"
    assert all(data[k] is None for k in ("executionId", "status", "startedAt", "cost", "files"))
    assert data["alert"]["observed"] == 1.02 and data["alert"]["threshold"] == 1


@pytest.mark.parametrize(
    ("value", "text"),
    [(Decimal(3), "3"), (Decimal("3.00"), "3"), (Decimal("66.67"), "66.67"),
     (Decimal("0.10"), "0.1"), (Decimal("1000"), "1000")],
)  # fmt: skip
def test_numbers_render_as_javascript_renders_them(value: Decimal, text: str) -> None:
    assert json.dumps(payload.js_number(value)) == text


def test_the_record_is_compact_json_that_decodes_as_a_notification_record() -> None:
    named = event(workflowName="Rapport général")
    record = payload.alert_notification("prj_1", alert(), named, sub(), EXTRAS, 1)
    raw = payload.encode(record)
    compact = json.dumps(json.loads(raw), separators=(",", ":"), ensure_ascii=False)
    assert raw == compact.encode()
    decoded = msgspec.json.decode(raw, type=NotificationRecord)
    assert decoded.deliveryId == record.deliveryId
    assert isinstance(decoded.payload.data.alert, AlertData)
    assert decoded.payload.data.alert.id == "alr_x"


def test_the_dispatcher_sends_back_exactly_the_payload_the_engine_made() -> None:
    flags = {
        "includeFinalOutput": True, "includeTraceSpans": True,
        "includeRateLimits": True, "includeUsageData": True,
    }  # fmt: skip
    rich = event(cost=Cost(total=0.25, input=0.1), finalOutput={"a": [1, 2.5]}, traceSpans=[])
    idle = alert(rule="no_activity", observed=Decimal("1.02"), executionId=None)
    records = [
        payload.execution_notification("prj_1", rich, sub(**flags), EXTRAS, 1),
        payload.execution_notification("prj_1", event(), sub(), EXTRAS, 1),
        payload.alert_notification("prj_1", alert(), rich, sub(**flags), EXTRAS, 1),
        payload.alert_notification("prj_1", idle, None, sub(), EXTRAS, 1),
    ]
    for record in records:
        raw = payload.encode(record)
        decoded = RecordDecoder(NotificationRecord).decode(raw)
        assert payload.encode(decoded) == raw
        assert msgspec.json.encode(decoded.payload) == msgspec.json.encode(record.payload)
