"""The sample a test send queues: the body receivers always got, marked as a test."""

import msgspec

from schemas.destinations import WebhookDestination
from services.api import samples
from services.common.clock import iso_ms
from services.common.controlplane import SubscriptionRow

AT_MS = 1_790_000_000_000


def test_the_sample_is_the_same_json_as_ever() -> None:
    sent = samples.sample_payload("evt_1", AT_MS)
    execution_id = sent.data.executionId
    assert isinstance(execution_id, str) and execution_id.startswith("test-")
    expected = {
        "id": "evt_1", "type": "workflow.execution.completed", "timestamp": AT_MS, "test": True,
        "data": {
            "workflowId": "test-workflow", "workflowName": "CodeCourier test notification",
            "executionId": execution_id, "status": "success", "level": "info", "trigger": "manual",
            "startedAt": iso_ms(AT_MS - 1234), "endedAt": iso_ms(AT_MS), "totalDurationMs": 1234,
            "cost": {"total": 0}, "files": None,
        },
        "links": {"log": "/v1/logs/test", "execution": f"/v1/logs/executions/{execution_id}"},
    }  # fmt: skip
    assert msgspec.json.encode(sent) == msgspec.json.encode(expected)


def test_the_sample_goes_to_the_subscription_as_it_is_stored() -> None:
    config = b'{"workflowIds":[],"allWorkflows":true,"levelFilter":["info"],"triggerFilter":[],'
    config += b'"includeFinalOutput":false,"includeTraceSpans":false,"includeRateLimits":false,'
    config += b'"includeUsageData":false,"active":false,"webhookUrl":"https://h.example.com/x"}'
    row = SubscriptionRow(
        id="ntf_1", project_id="prj_1", notification_type="webhook",
        config_json=config.decode(), secret_ciphertext="sealed", previous_secret_ciphertext=None,
        previous_secret_until_ms=None, disabled_reason=None, created_at_ms=1, updated_at_ms=1,
        version=3,
    )  # fmt: skip
    note = samples.sample_notification(row, AT_MS)
    assert note.destination == WebhookDestination(url="https://h.example.com/x")
    assert (note.secretCiphertext, note.subscriptionVersion) == ("sealed", 3)
    assert note.payload.test is True and note.eventId == note.payload.id
    assert note.deliveryId.startswith("dlv_") and note.createdAtMs == AT_MS
