"""Subscriptions as stored and as announced on the compacted `subscriptions` topic (pure).

Shared by the API, which writes them, and the dispatcher, which disables one when its receiver
answers 410 Gone: both write the row and its announcements in one transaction (the outbox).
"""

import msgspec
from msgspec import Struct

from schemas import topics
from schemas.alerts import AlertConfig
from schemas.destinations import (
    Destination,
    DiscordDestination,
    EmailDestination,
    PagerDutyDestination,
    SlackDestination,
    TeamsDestination,
    WebhookDestination,
)
from schemas.notifications import SubscriptionRecord
from services.common.controlplane import OutboxMessage, SubscriptionRow

_json = msgspec.json.Encoder(decimal_format="number")


class StoredConfig(Struct, frozen=True, omit_defaults=True):
    """The non-secret settings of a subscription, as kept in `config_json`."""

    workflowIds: list[str]
    allWorkflows: bool
    levelFilter: list[str]
    triggerFilter: list[str]
    includeFinalOutput: bool
    includeTraceSpans: bool
    includeRateLimits: bool
    includeUsageData: bool
    active: bool
    webhookUrl: str | None = None
    standardWebhooks: bool = False
    emailRecipients: list[str] | None = None
    slackChannel: str | None = None
    alertConfig: AlertConfig | None = None


# Channels whose destination is nothing but their sealed secret.
_SECRET_ONLY: dict[str, Destination] = {
    "pagerduty": PagerDutyDestination(),
    "teams": TeamsDestination(),
    "discord": DiscordDestination(),
}

_config_decoder = msgspec.json.Decoder(StoredConfig)


def config_of(row: SubscriptionRow) -> StoredConfig:
    """The non-secret settings of a stored subscription."""
    return _config_decoder.decode(row.config_json)


def destination_of(row: SubscriptionRow, c: StoredConfig) -> Destination:
    """Where a stored subscription delivers; a rotated-out webhook secret stays sealed."""
    if row.notification_type == "email":
        return EmailDestination(recipients=c.emailRecipients or [])
    if row.notification_type == "slack":
        return SlackDestination(channelName=c.slackChannel)
    if row.notification_type in _SECRET_ONLY:
        return _SECRET_ONLY[row.notification_type]
    if row.notification_type != "webhook":
        raise ValueError(f"unknown notification type {row.notification_type!r}")
    previous = row.previous_secret_ciphertext or None
    return WebhookDestination(
        url=c.webhookUrl or "",
        standardWebhooks=c.standardWebhooks,
        previousSecretCiphertext=previous,
        previousSecretUntilMs=row.previous_secret_until_ms if previous else None,
    )


def record(row: SubscriptionRow, deleted: bool = False) -> SubscriptionRecord:
    """The `subscriptions` topic record for a row (secrets stay sealed)."""
    c = config_of(row)
    return SubscriptionRecord(
        v=1, id=row.id, projectId=row.project_id, version=row.version, deleted=deleted,
        notificationType=row.notification_type,  # type: ignore[arg-type]
        workflowIds=c.workflowIds, allWorkflows=c.allWorkflows, levelFilter=c.levelFilter,
        triggerFilter=c.triggerFilter, includeFinalOutput=c.includeFinalOutput,
        includeTraceSpans=c.includeTraceSpans, includeRateLimits=c.includeRateLimits,
        includeUsageData=c.includeUsageData, active=c.active and not row.disabled_reason,
        createdAtMs=row.created_at_ms, destination=destination_of(row, c),
        secretCiphertext=row.secret_ciphertext, alertConfig=c.alertConfig,
    )  # fmt: skip


def announcements(
    row: SubscriptionRow, partitions: list[int], deleted: bool = False
) -> list[OutboxMessage]:
    """Outbox messages broadcasting a subscription (or its removal) to every partition."""
    value = _json.encode(record(row, deleted))
    messages = [OutboxMessage(topics.SUBSCRIPTIONS, f"{row.id}/{p}", p, value) for p in partitions]
    if deleted:  # then tombstones, so compaction forgets it
        messages += [
            OutboxMessage(topics.SUBSCRIPTIONS, f"{row.id}/{p}", p, None) for p in partitions
        ]
    return messages
