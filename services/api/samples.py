"""What a test send (`POST /api/v1/notifications/{id}/test`) queues: a made-up execution,
marked as a test, for a subscription's destination like any notification."""

import secrets

from schemas.events import Cost
from schemas.notifications import NotificationRecord
from schemas.payloads import EXECUTION_COMPLETED, DeliveryData, DeliveryPayload, Links
from services.common.clock import iso_ms
from services.common.controlplane import SubscriptionRow
from services.common.ids import new_id
from services.common.subscriptions import record

SAMPLE_DURATION_MS = 1234


def sample_payload(event_id: str, at_ms: int) -> DeliveryPayload:
    """The body of a test delivery: a successful execution that ended at `at_ms`."""
    execution_id = f"test-{secrets.token_hex(6)}"
    data = DeliveryData(
        workflowId="test-workflow", workflowName="CodeCourier test notification",
        executionId=execution_id, status="success", level="info", trigger="manual",
        startedAt=iso_ms(at_ms - SAMPLE_DURATION_MS), endedAt=iso_ms(at_ms),
        totalDurationMs=SAMPLE_DURATION_MS, cost=Cost(total=0), files=None,
    )  # fmt: skip
    links = Links(log="/v1/logs/test", execution=f"/v1/logs/executions/{execution_id}")
    return DeliveryPayload(
        id=event_id, type=EXECUTION_COMPLETED, timestamp=at_ms, test=True, data=data, links=links
    )


def sample_notification(row: SubscriptionRow, at_ms: int) -> NotificationRecord:
    """A test notification to a subscription's current destination (inactive ones too)."""
    event_id = new_id("evt_")
    subscription = record(row)
    return NotificationRecord(
        v=1, deliveryId=new_id("dlv_"), eventId=event_id, subscriptionId=row.id,
        projectId=row.project_id, notificationType=subscription.notificationType,
        destination=subscription.destination, payload=sample_payload(event_id, at_ms),
        createdAtMs=at_ms, secretCiphertext=row.secret_ciphertext, subscriptionVersion=row.version,
    )  # fmt: skip
