"""A subscription body as it is stored: the settings a create or PATCH body becomes
(`StoredConfig`), the sealed secret it gives its channel, and the checks they pass before they
are stored (shape, egress, workflows)."""

import msgspec
from msgspec import UNSET

from schemas.api import ErrorDetail
from schemas.notifications import SubscriptionBody, SubscriptionPatch
from services.api.deps import Deps
from services.common.egress import EgressRefused, check_url, parse_cidrs
from services.common.errors import InvalidInput
from services.common.subscriptions import StoredConfig

# The channels whose destination is one sealed secret: (body field, the secret's name in it).
SEALED: dict[str, tuple[str, str]] = {
    "slack": ("slackConfig", "webhookUrl"),
    "pagerduty": ("pagerdutyConfig", "routingKey"),
    "teams": ("teamsConfig", "webhookUrl"),
    "discord": ("discordConfig", "webhookUrl"),
}
CONFIG_FIELDS = ("webhookConfig", *(field for field, _ in SEALED.values()))

_WORKFLOWS_SQL = (
    "SELECT DISTINCT workflow_id FROM executions WHERE project_id = {p:String} "
    "AND workflow_id IN {ids:Array(String)} UNION DISTINCT "
    "SELECT DISTINCT workflow_id FROM executions_started WHERE project_id = {p:String} "
    "AND workflow_id IN {ids:Array(String)}"
)


def stored(body: SubscriptionBody) -> StoredConfig:
    """The settings of a create body, lists deduplicated (secrets are sealed apart)."""
    return StoredConfig(
        workflowIds=list(dict.fromkeys(body.workflowIds)), allWorkflows=body.allWorkflows,
        levelFilter=sorted(set(body.levelFilter)), triggerFilter=sorted(set(body.triggerFilter)),
        includeFinalOutput=body.includeFinalOutput, includeTraceSpans=body.includeTraceSpans,
        includeRateLimits=body.includeRateLimits, includeUsageData=body.includeUsageData,
        active=body.active, webhookUrl=body.webhookConfig.url if body.webhookConfig else None,
        standardWebhooks=body.webhookConfig.standardWebhooks if body.webhookConfig else False,
        emailRecipients=body.emailRecipients,
        slackChannel=body.slackConfig.channelName if body.slackConfig else None,
        alertConfig=body.alertConfig,
    )  # fmt: skip


def merged(c: StoredConfig, patch: SubscriptionPatch) -> StoredConfig:
    """Stored settings with a PATCH body's fields applied."""
    changes = {k: v for k, v in msgspec.structs.asdict(patch).items() if v is not UNSET}
    for name in CONFIG_FIELDS:
        changes.pop(name, None)
    if isinstance(patch.webhookConfig, msgspec.Struct):
        changes["webhookUrl"] = patch.webhookConfig.url
        changes["standardWebhooks"] = patch.webhookConfig.standardWebhooks
    if isinstance(patch.slackConfig, msgspec.Struct):
        changes["slackChannel"] = patch.slackConfig.channelName
    return msgspec.structs.replace(c, **changes)


def config_field(kind: str) -> str | None:
    """The body field that holds a channel's destination (None for email)."""
    return "webhookConfig" if kind == "webhook" else SEALED.get(kind, (None, ""))[0]


def sealed_secret(
    kind: str, body: SubscriptionBody | SubscriptionPatch
) -> tuple[str | None, dict[str, str]]:
    """The secret a body gives a sealed channel, if any, and its URL for the egress check."""
    if kind not in SEALED:
        return None, {}
    field, name = SEALED[kind]
    config = getattr(body, field)
    if not isinstance(config, msgspec.Struct):
        return None, {}
    secret: str = getattr(config, name)
    return secret, ({f"{field}.{name}": secret} if name == "webhookUrl" else {})


def _check_shape(kind: str, c: StoredConfig, has_secret: bool) -> list[ErrorDetail]:
    errors = []
    if c.allWorkflows and c.workflowIds:
        errors.append(ErrorDetail(field="workflowIds", message="Leave empty with allWorkflows."))
    if not c.allWorkflows and not c.workflowIds:
        errors.append(
            ErrorDetail(field="workflowIds", message="Name workflows or set allWorkflows.")
        )
    needs: dict[str, tuple[str, object]] = {
        "webhook": ("webhookConfig", c.webhookUrl),
        "email": ("emailRecipients", c.emailRecipients),
        **{k: (field, has_secret) for k, (field, _) in SEALED.items()},
    }
    field, present = needs[kind]
    if not present:
        errors.append(ErrorDetail(field=field, message=f"Required for {kind} notifications."))
    if kind == "pagerduty" and c.alertConfig is None:  # an incident per execution is noise
        message = "PagerDuty subscriptions send alerts only: add a rule."
        errors.append(ErrorDetail(field="alertConfig", message=message))
    return errors


def _check_url(deps: Deps, field: str, url: str) -> list[ErrorDetail]:
    try:
        check_url(url, parse_cidrs(deps.settings.egress_allow_cidrs))
    except EgressRefused as exc:
        return [ErrorDetail(field=field, message=str(exc))]
    return []


async def _check_workflows(deps: Deps, project_id: str, ids: list[str]) -> list[ErrorDetail]:
    if not ids:
        return []
    found = await deps.clickhouse.rows(_WORKFLOWS_SQL, {"p": project_id, "ids": ids})
    known = {workflow_id for (workflow_id,) in found}
    return [
        ErrorDetail(field=f"workflowIds[{i}]", message=f"No workflow {w} in this project.")
        for i, w in enumerate(ids)
        if w not in known
    ]


async def validate(
    deps: Deps, project_id: str, kind: str, c: StoredConfig, urls: dict[str, str], has_secret: bool
) -> None:
    """Raise InvalidInput naming every field that fails its check."""
    errors = _check_shape(kind, c, has_secret)
    for field, url in urls.items():
        errors += _check_url(deps, field, url)
    errors += await _check_workflows(deps, project_id, c.workflowIds)
    if errors:
        raise InvalidInput(f"Invalid subscription: {', '.join(e.field for e in errors)}.", errors)
