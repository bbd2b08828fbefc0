"""A receiver answered 410 Gone: disable its subscription, visibly, through the outbox."""

import time

import msgspec
import structlog

from schemas.notifications import NotificationRecord
from services.common.controlplane import ControlPlane
from services.common.subscriptions import announcements

log = structlog.get_logger(__name__)


class Disabler:
    """Marks subscriptions disabled in the control plane (row + outbox in one transaction)."""

    def __init__(self, controlplane: ControlPlane, partitions: list[int]) -> None:
        self.controlplane = controlplane
        self.partitions = partitions

    async def __call__(self, record: NotificationRecord, reason: str) -> None:
        """Disable `record`'s subscription with `reason`, unless already disabled or gone."""
        for _ in range(5):  # optimistic locking: retry when the API changed the row meanwhile
            row = await self.controlplane.get_subscription(record.projectId, record.subscriptionId)
            if row is None or row.disabled_reason:
                return
            at = max(row.updated_at_ms + 1, int(time.time() * 1000))
            disabled = msgspec.structs.replace(
                row, disabled_reason=reason, version=row.version + 1, updated_at_ms=at
            )
            messages = announcements(disabled, self.partitions)
            if await self.controlplane.save_subscription(disabled, messages, create=False):
                log.warning("dispatcher.subscription_disabled", subscription=row.id, reason=reason)
                return
