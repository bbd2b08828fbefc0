"""Routes: `/api/v1/notifications`: validate, seal secrets, write with the outbox."""

import base64
import secrets

import msgspec
from msgspec import UNSET, Struct

from schemas import topics
from schemas.notifications import (
    Deleted,
    Subscription,
    SubscriptionBody,
    SubscriptionCreated,
    SubscriptionPatch,
    TestSent,
)
from services.api.deps import Deps
from services.api.health import health_of, summaries
from services.api.outbox import publish_now
from services.api.routing import (
    CURSOR,
    Call,
    Page,
    Route,
    int_param,
    limit_param,
)
from services.api.samples import sample_notification
from services.api.subscriptionform import (
    CONFIG_FIELDS,
    config_field,
    merged,
    sealed_secret,
    stored,
    validate,
)
from services.api.views import subscription_view as view
from services.common.clock import now_ms
from services.common.controlplane import OutboxMessage, SubscriptionRow
from services.common.cursor import decode_cursor, encode_cursor
from services.common.errors import Conflict, InvalidCursor, InvalidInput, NotFound
from services.common.ids import new_id
from services.common.kafka import check_record_size
from services.common.sealing import seal
from services.common.subscriptions import announcements, config_of

MAX_PER_TYPE = 10
ROTATION_GRACE_MS = 24 * 3600 * 1000
_json = msgspec.json.Encoder(decimal_format="number")


class SubscriptionsCursor(Struct, frozen=True):
    """Where a subscription listing stopped."""

    v: int
    project: str
    after: str


async def announce(deps: Deps, row: SubscriptionRow, deleted: bool = False) -> list[OutboxMessage]:
    """Outbox messages broadcasting a subscription (or its removal) to every partition."""
    partitions = sorted(await deps.producer.partitions_for(topics.SUBSCRIPTIONS))
    messages = announcements(row, partitions, deleted)
    for message in messages:
        check_record_size(message.value or b"", message.key.encode(), "subscription")
    return messages


def _new_signing_secret() -> str:
    """32 random bytes as Standard Webhooks spells a secret (`whsec_` + base64)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


async def create(call: Call) -> SubscriptionCreated:
    """Create a subscription; a generated signing secret is shown this once."""
    body: SubscriptionBody = call.body
    deps, project_id = call.deps, call.principal.project_id
    config = stored(body)
    urls = {"webhookConfig.url": config.webhookUrl} if config.webhookUrl else {}
    secret, sealed_urls = sealed_secret(body.notificationType, body)
    await validate(
        deps, project_id, body.notificationType, config, urls | sealed_urls, secret is not None
    )
    subscription_id, at = new_id("ntf_"), now_ms(deps.clock)
    generated = None
    if body.webhookConfig is not None:
        secret = body.webhookConfig.secret or (generated := _new_signing_secret())
    key = deps.sealing_key
    row = SubscriptionRow(
        id=subscription_id, project_id=project_id, notification_type=body.notificationType,
        config_json=_json.encode(config).decode(),
        secret_ciphertext=seal(secret, key, subscription_id) if secret else None,
        previous_secret_ciphertext=None, previous_secret_until_ms=None, disabled_reason=None,
        created_at_ms=at, updated_at_ms=at, version=1,
    )  # fmt: skip
    if not await deps.controlplane.create_subscription(
        row, await announce(deps, row), MAX_PER_TYPE
    ):
        raise Conflict(
            f"A project has at most {MAX_PER_TYPE} {body.notificationType} subscriptions."
        )
    await publish_now(deps)
    return SubscriptionCreated(subscription=view(row), signingSecret=generated)


async def _load(call: Call) -> SubscriptionRow:
    row = await call.deps.controlplane.get_subscription(call.principal.project_id, call.path("id"))
    if row is None:
        raise NotFound(f"No notification subscription {call.path('id')} in this project.")
    return row


async def _with_health(deps: Deps, rows: list[SubscriptionRow]) -> list[Subscription]:
    """Views of subscriptions with their health, from one delivery-log query for all of them."""
    limits = deps.settings.query_limits_for("health")
    pairs = [(r.project_id, r.id) for r in rows]
    found = await summaries(deps.clickhouse, pairs, now_ms(deps.clock), limits)
    return [
        msgspec.structs.replace(view(r), health=health_of(found.get(r.id), bool(r.disabled_reason)))
        for r in rows
    ]


async def get_one(call: Call) -> Subscription:
    """One subscription with its health, without secrets."""
    return (await _with_health(call.deps, [await _load(call)]))[0]


async def list_all(call: Call) -> Page:
    """The project's subscriptions in id order."""
    project_id = call.principal.project_id
    limit = int_param(call.query, "limit", 50, 1, 100)
    after = None
    if token := call.query.get("cursor"):
        cursor = decode_cursor(token, SubscriptionsCursor, call.deps.cursor_key)
        if cursor.project != project_id:
            raise InvalidCursor("The cursor does not belong to this listing.")
        after = cursor.after
    rows = await call.deps.controlplane.list_subscriptions(project_id, limit + 1, after)
    page, has_more = rows[:limit], len(rows) > limit
    next_cursor = None
    if has_more:
        last = SubscriptionsCursor(v=1, project=project_id, after=page[-1].id)
        next_cursor = encode_cursor(last, call.deps.cursor_key)
    return Page(await _with_health(call.deps, page), next_cursor, has_more)


async def update(call: Call) -> Subscription:
    """Change any subset of the settings; secrets only when given anew."""
    patch: SubscriptionPatch = call.body
    row = await _load(call)
    deps = call.deps
    kind = row.notification_type
    own = config_field(kind)
    if any(getattr(patch, f) is not UNSET and f != own for f in CONFIG_FIELDS):
        raise InvalidInput.field("notificationType", f"This is a {kind} subscription.")
    if patch.emailRecipients is not UNSET and kind != "email":
        raise InvalidInput.field("emailRecipients", f"This is a {kind} subscription.")
    config = merged(config_of(row), patch)
    urls = {}
    secret_ciphertext = row.secret_ciphertext
    key = deps.sealing_key
    if isinstance(patch.webhookConfig, msgspec.Struct):
        urls["webhookConfig.url"] = patch.webhookConfig.url
        if patch.webhookConfig.secret:
            secret_ciphertext = seal(patch.webhookConfig.secret, key, row.id)
    secret, sealed_urls = sealed_secret(kind, patch)
    if secret is not None:
        urls |= sealed_urls
        secret_ciphertext = seal(secret, key, row.id)
    await validate(deps, row.project_id, kind, config, urls, secret_ciphertext is not None)
    updated = msgspec.structs.replace(
        row, config_json=_json.encode(config).decode(), secret_ciphertext=secret_ciphertext,
        disabled_reason=None if patch.active is True else row.disabled_reason,
        updated_at_ms=now_ms(deps.clock), version=row.version + 1,
    )  # fmt: skip
    if not await deps.controlplane.save_subscription(
        updated, await announce(deps, updated), create=False
    ):
        raise Conflict("The subscription changed meanwhile; read it again and retry.")
    await publish_now(deps)
    return view(updated)


async def delete(call: Call) -> Deleted:
    """Delete a subscription; consumers forget it through the outbox."""
    row = await _load(call)
    removed = msgspec.structs.replace(row, version=row.version + 1)
    messages = await announce(call.deps, removed, deleted=True)
    if not await call.deps.controlplane.delete_subscription(
        row.project_id, row.id, messages, now_ms(call.deps.clock)
    ):
        raise NotFound(f"No notification subscription {row.id} in this project.")
    await publish_now(call.deps)
    return Deleted(id=row.id, deleted=True)


async def rotate_secret(call: Call) -> SubscriptionCreated:
    """A new signing secret; the old one keeps signing (alongside) for 24 hours."""
    row = await _load(call)
    if row.notification_type != "webhook":
        raise InvalidInput.field("notificationType", "Only webhook subscriptions have a secret.")
    deps = call.deps
    secret, at = _new_signing_secret(), now_ms(deps.clock)
    key = deps.sealing_key
    rotated = msgspec.structs.replace(
        row, secret_ciphertext=seal(secret, key, row.id),
        previous_secret_ciphertext=row.secret_ciphertext,
        previous_secret_until_ms=at + ROTATION_GRACE_MS if row.secret_ciphertext else None,
        updated_at_ms=at, version=row.version + 1,
    )  # fmt: skip
    if not await deps.controlplane.save_subscription(
        rotated, await announce(deps, rotated), create=False
    ):
        raise Conflict("The subscription changed meanwhile; retry.")
    await publish_now(deps)
    return SubscriptionCreated(subscription=view(rotated), signingSecret=secret)


async def send_test(call: Call) -> TestSent:
    """Queue a sample event to this subscription's destination."""
    row = await _load(call)
    notification = sample_notification(row, now_ms(call.deps.clock))
    value = _json.encode(notification)
    check_record_size(value, row.id.encode(), "test notification")
    await call.deps.producer.send_and_wait(topics.NOTIFICATIONS, value, key=row.id.encode())
    return TestSent(deliveryId=notification.deliveryId, eventId=notification.eventId)


_ID = "/api/v1/notifications/{id}"
ROUTES = [
    Route(
        "POST",
        "/api/v1/notifications",
        create,
        "Create a notification subscription",
        "notifications",
        scope="notifications:write",
        body=SubscriptionBody,
        response=SubscriptionCreated,
        status=201,
        conflict="the project already has 10 subscriptions of this type",
    ),
    Route(
        "GET",
        "/api/v1/notifications",
        list_all,
        "List notification subscriptions",
        "notifications",
        scope="notifications:read",
        response=Subscription,
        paged=True,
        params=(limit_param(100, 50), CURSOR),
    ),
    Route(
        "GET",
        _ID,
        get_one,
        "One notification subscription",
        "notifications",
        scope="notifications:read",
        response=Subscription,
    ),
    Route(
        "PATCH",
        _ID,
        update,
        "Change a notification subscription",
        "notifications",
        scope="notifications:write",
        body=SubscriptionPatch,
        response=Subscription,
        conflict="the subscription changed meanwhile; read it again and retry",
    ),
    Route(
        "DELETE",
        _ID,
        delete,
        "Delete a notification subscription",
        "notifications",
        scope="notifications:write",
        response=Deleted,
    ),
    Route(
        "POST",
        f"{_ID}/test",
        send_test,
        "Send a sample event",
        "notifications",
        scope="notifications:write",
        response=TestSent,
        status=202,
    ),
    Route(
        "POST",
        f"{_ID}/rotate-secret",
        rotate_secret,
        "Rotate the webhook signing secret",
        "notifications",
        scope="notifications:write",
        response=SubscriptionCreated,
        conflict="the subscription changed meanwhile; retry",
    ),
]
