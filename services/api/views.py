"""Records to API bodies (pure)."""

from typing import cast

from schemas.api import Key, Plan, Project, WhoAmI
from schemas.notifications import (
    NotificationType,
    PagerDutyView,
    SlackView,
    Subscription,
    WebhookUrlView,
    WebhookView,
)
from services.common.clock import iso_ms
from services.common.controlplane import KeyRecord, ProjectRecord, SubscriptionRow
from services.common.subscriptions import config_of


def _iso(ms: int | None) -> str | None:
    return iso_ms(ms) if ms is not None else None


def project_view(project: ProjectRecord) -> Project:
    """A project as the API shows it."""
    return Project(
        id=project.id,
        name=project.name,
        plan=cast(Plan, project.plan),
        createdAt=iso_ms(project.created_at_ms),
    )


def key_view(key: KeyRecord, last_used_ms: int | None) -> Key:
    """A key as listed: never its secret or hash."""
    return Key(
        id=key.id,
        projectId=key.project_id,
        name=key.name,
        prefix=key.prefix,
        scopes=key.scopes,
        createdAt=iso_ms(key.created_at_ms),
        expiresAt=_iso(key.expires_at_ms),
        lastUsedAt=_iso(last_used_ms),
    )


def whoami_view(key: KeyRecord, last_used_ms: int | None) -> WhoAmI:
    """The calling key, as `whoami` describes it."""
    return WhoAmI(
        keyId=key.id,
        projectId=key.project_id,
        name=key.name,
        scopes=key.scopes,
        createdAt=iso_ms(key.created_at_ms),
        lastUsedAt=_iso(last_used_ms),
    )


def subscription_view(row: SubscriptionRow) -> Subscription:
    """A subscription as the API shows it: destinations without their secrets."""
    c = config_of(row)
    kind = cast(NotificationType, row.notification_type)
    webhook = WebhookView(
        url=c.webhookUrl or "", hasSecret=row.secret_ciphertext is not None,
        standardWebhooks=c.standardWebhooks,
    )  # fmt: skip
    slack = SlackView(channelName=c.slackChannel, webhookUrlSet=True)
    url_set = WebhookUrlView(webhookUrlSet=row.secret_ciphertext is not None)
    return Subscription(
        id=row.id, notificationType=kind, workflowIds=c.workflowIds,
        allWorkflows=c.allWorkflows, levelFilter=c.levelFilter, triggerFilter=c.triggerFilter,
        includeFinalOutput=c.includeFinalOutput, includeTraceSpans=c.includeTraceSpans,
        includeRateLimits=c.includeRateLimits, includeUsageData=c.includeUsageData,
        active=c.active and not row.disabled_reason, createdAt=iso_ms(row.created_at_ms),
        updatedAt=iso_ms(row.updated_at_ms),
        webhookConfig=webhook if kind == "webhook" else None,
        emailRecipients=c.emailRecipients if kind == "email" else None,
        slackConfig=slack if kind == "slack" else None,
        pagerdutyConfig=PagerDutyView(row.secret_ciphertext is not None)
        if kind == "pagerduty" else None,
        teamsConfig=url_set if kind == "teams" else None,
        discordConfig=url_set if kind == "discord" else None,
        alertConfig=c.alertConfig, disabledReason=row.disabled_reason,
    )  # fmt: skip
