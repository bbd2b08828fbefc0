"""Notification subscriptions (contract section 6): API bodies and the records on topics."""

from datetime import datetime
from typing import Annotated, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from schemas.alerts import AlertConfig
from schemas.destinations import Destination
from schemas.payloads import DeliveryPayload

NotificationType = Literal["webhook", "email", "slack", "pagerduty", "teams", "discord"]
Level = Literal["info", "error"]
Url = Annotated[str, Meta(min_length=8, max_length=2048)]
Email = Annotated[str, Meta(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
WorkflowId = Annotated[str, Meta(min_length=1, max_length=256)]
Secret = Annotated[str, Meta(min_length=16, max_length=512)]
# A PagerDuty Events API v2 integration key: 32 characters.
RoutingKey = Annotated[str, Meta(min_length=32, max_length=32, pattern=r"^[0-9A-Za-z]{32}$")]
# The lists of a subscription, bounded alike on create and on PATCH.
WorkflowIds = Annotated[list[WorkflowId], Meta(max_length=1000)]
Levels = Annotated[list[Level], Meta(min_length=1)]
Triggers = Annotated[list[Annotated[str, Meta(min_length=1, max_length=64)]], Meta(max_length=50)]
Recipients = Annotated[list[Email], Meta(max_length=10)]


class WebhookConfig(Struct, frozen=True, forbid_unknown_fields=True):
    """Where a webhook goes, the secret it is signed with (write only), and whether the
    Standard Webhooks headers (`webhook-id`, `webhook-timestamp`, `webhook-signature`) are
    sent besides the `sim-*` ones."""

    url: Url
    secret: Secret | None = None
    standardWebhooks: bool = False


class SlackConfig(Struct, frozen=True, forbid_unknown_fields=True):
    """A Slack incoming webhook (its URL is a secret: never returned)."""

    webhookUrl: Url
    channelName: Annotated[str, Meta(max_length=80)] | None = None


class PagerDutyConfig(Struct, frozen=True, forbid_unknown_fields=True):
    """A PagerDuty service's Events API v2 integration key (a secret: never returned)."""

    routingKey: RoutingKey


class TeamsConfig(Struct, frozen=True, forbid_unknown_fields=True):
    """A Microsoft Teams incoming webhook or Workflows URL (a secret: never returned)."""

    webhookUrl: Url


class DiscordConfig(Struct, frozen=True, forbid_unknown_fields=True):
    """A Discord channel webhook URL (a secret: never returned)."""

    webhookUrl: Url


class SubscriptionBody(Struct, frozen=True, forbid_unknown_fields=True):
    """Body of `POST /api/v1/notifications` (Sim field names)."""

    notificationType: NotificationType
    workflowIds: WorkflowIds = []
    allWorkflows: bool = False
    levelFilter: Levels = msgspec.field(default_factory=lambda: ["info", "error"])
    triggerFilter: Triggers = []
    includeFinalOutput: bool = False
    includeTraceSpans: bool = False
    includeRateLimits: bool = False
    includeUsageData: bool = False
    webhookConfig: WebhookConfig | None = None
    emailRecipients: Recipients | None = None
    slackConfig: SlackConfig | None = None
    pagerdutyConfig: PagerDutyConfig | None = None
    teamsConfig: TeamsConfig | None = None
    discordConfig: DiscordConfig | None = None
    active: bool = True
    alertConfig: AlertConfig | None = None


class SubscriptionPatch(Struct, frozen=True, forbid_unknown_fields=True):
    """Body of `PATCH /api/v1/notifications/{id}`: any subset of the creatable fields."""

    workflowIds: WorkflowIds | UnsetType = UNSET
    allWorkflows: bool | UnsetType = UNSET
    levelFilter: Levels | UnsetType = UNSET
    triggerFilter: Triggers | UnsetType = UNSET
    includeFinalOutput: bool | UnsetType = UNSET
    includeTraceSpans: bool | UnsetType = UNSET
    includeRateLimits: bool | UnsetType = UNSET
    includeUsageData: bool | UnsetType = UNSET
    webhookConfig: WebhookConfig | UnsetType = UNSET
    emailRecipients: Recipients | UnsetType = UNSET
    slackConfig: SlackConfig | UnsetType = UNSET
    pagerdutyConfig: PagerDutyConfig | UnsetType = UNSET
    teamsConfig: TeamsConfig | UnsetType = UNSET
    discordConfig: DiscordConfig | UnsetType = UNSET
    active: bool | UnsetType = UNSET
    alertConfig: AlertConfig | UnsetType | None = UNSET


class WebhookView(Struct, frozen=True):
    """A webhook destination as shown: the URL, never the secret."""

    url: str
    hasSecret: bool
    standardWebhooks: bool = False


class SlackView(Struct, frozen=True):
    """A Slack destination as shown: the channel, never the webhook URL."""

    channelName: str | None
    webhookUrlSet: bool


HealthStatus = Literal["healthy", "failing", "disabled"]


class EndpointHealth(Struct, frozen=True, omit_defaults=True):
    """How a subscription's receiver is doing, from the delivery log (README "Endpoint health").

    A delivery counts once it has ended (its latest round's last attempt is `delivered` or
    `failed`). `failing`: the latest ended delivery failed; `failingSince`: when the oldest failed
    delivery after the last success ended; `successRate24h`: delivered / ended over the
    deliveries that ended in the last 24 hours (absent when none did); `disabled`: the
    subscription was turned off with a `disabledReason`.
    """

    status: HealthStatus
    failingSince: str | None = None
    lastSuccessAt: str | None = None
    lastFailureAt: str | None = None
    successRate24h: float | None = None


class PagerDutyView(Struct, frozen=True):
    """A PagerDuty destination as shown: never the routing key."""

    routingKeySet: bool


class WebhookUrlView(Struct, frozen=True):
    """A Teams or Discord destination as shown: never the webhook URL."""

    webhookUrlSet: bool


class Subscription(Struct, frozen=True, omit_defaults=True):
    """A subscription as the API returns it (no secret, ever)."""

    id: str
    notificationType: NotificationType
    workflowIds: list[str]
    allWorkflows: bool
    levelFilter: list[str]
    triggerFilter: list[str]
    includeFinalOutput: bool
    includeTraceSpans: bool
    includeRateLimits: bool
    includeUsageData: bool
    active: bool
    createdAt: str
    updatedAt: str
    webhookConfig: WebhookView | None = None
    emailRecipients: list[str] | None = None
    slackConfig: SlackView | None = None
    pagerdutyConfig: PagerDutyView | None = None
    teamsConfig: WebhookUrlView | None = None
    discordConfig: WebhookUrlView | None = None
    alertConfig: AlertConfig | None = None
    disabledReason: str | None = None
    health: EndpointHealth | None = None


class SubscriptionCreated(Struct, frozen=True, omit_defaults=True):
    """The answer to a create or a secret rotation: the signing secret, shown this once."""

    subscription: Subscription
    signingSecret: str | None = None


class Deleted(Struct, frozen=True):
    """The answer to a deletion."""

    id: str
    deleted: bool


class RecoverBody(Struct, frozen=True, forbid_unknown_fields=True):
    """Send again the deliveries whose latest round ended `failed` between `since` and `until`
    (default now); RFC 3339 times, at most 30 days apart."""

    since: Annotated[datetime, Meta(tz=True)]
    until: Annotated[datetime, Meta(tz=True)] | None = None


class Recovered(Struct, frozen=True):
    """How many failed deliveries were queued again (at most 1,000 per call)."""

    deliveries: int


class TestSent(Struct, frozen=True):
    """A sample notification was queued for delivery."""

    deliveryId: str
    eventId: str


class SubscriptionRecord(Struct, frozen=True, tag="subscription", tag_field="kind"):
    """A subscription on the compacted `subscriptions` topic (key `<id>/<partition>`).

    Broadcast to every partition, since a subscription can cover workflows on any of them.
    `deleted` records are followed by a tombstone. Destination secrets travel encrypted
    (`secretCiphertext`) for the dispatcher, which holds the key. Decode it with a
    `RecordDecoder`, which also reads destinations written before they were tagged.

    The same record is also a marker on `executions` (same tag, `kind: "subscription"`),
    written to every partition before the compacted records: `markerOffset` is then the offset
    of the marker on this record's partition, from which the alert engine applies it (None in
    the marker itself and in records written before markers existed).
    """

    v: int
    id: str
    projectId: str
    version: int
    deleted: bool
    notificationType: NotificationType
    workflowIds: list[str]
    allWorkflows: bool
    levelFilter: list[str]
    triggerFilter: list[str]
    includeFinalOutput: bool
    includeTraceSpans: bool
    includeRateLimits: bool
    includeUsageData: bool
    active: bool
    createdAtMs: int
    destination: Destination
    secretCiphertext: str | None = None
    alertConfig: AlertConfig | None = None
    markerOffset: int | None = None


class NotificationRecord(Struct, frozen=True, tag="notification", tag_field="kind"):
    """What the alert engine puts on `notifications` (key = subscription id) for the dispatcher.

    `payload` is the delivery body of contract section 6, already filtered by the include flags;
    `deliveryId` is created here once and reused by every attempt and redelivery. The same
    record, with `attempt` and `dueAtMs` set, waits on a retry tier topic for its next attempt;
    `round` tells a redelivery (its time in ms) from the first delivery (0). Decode it with a
    `RecordDecoder`, as a `SubscriptionRecord`.
    """

    v: int
    deliveryId: str
    eventId: str
    subscriptionId: str
    projectId: str
    notificationType: NotificationType
    destination: Destination
    payload: DeliveryPayload
    createdAtMs: int
    secretCiphertext: str | None = None
    attempt: int = 1
    round: int = 0
    dueAtMs: int = 0
    subscriptionVersion: int = 0  # of the destination and secret carried here
