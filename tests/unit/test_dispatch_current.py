"""The dispatcher's view of subscriptions: deleted, inactive, rotated, moved."""

import msgspec

from schemas.destinations import WebhookDestination
from schemas.notifications import NotificationRecord, SubscriptionRecord
from schemas.payloads import DeliveryData, DeliveryPayload, Links
from services.dispatcher.current import DELETED, INACTIVE, Subscriptions


def sub(version: int, **changes: object) -> bytes:
    base = SubscriptionRecord(
        v=1, id="ntf_a", projectId="prj_a", version=version, deleted=False,
        notificationType="webhook", workflowIds=[], allWorkflows=True,
        levelFilter=["error", "info"], triggerFilter=[], includeFinalOutput=False,
        includeTraceSpans=False, includeRateLimits=False, includeUsageData=False, active=True,
        createdAtMs=1, destination=WebhookDestination(url=f"https://v{version}.example.com"),
        secretCiphertext=f"sealed-{version}",
    )  # fmt: skip
    return msgspec.json.encode(msgspec.structs.replace(base, **changes))


def payload(event_id: str = "evt_1", **fields: object) -> DeliveryPayload:
    return DeliveryPayload(
        id=event_id, type="workflow.execution.completed", timestamp=1,
        data=DeliveryData(workflowId="wf"), links=Links(), **fields,
    )  # fmt: skip


def note(body: DeliveryPayload | None = None) -> NotificationRecord:
    return NotificationRecord(
        v=1, deliveryId="dlv_1", eventId="evt_1", subscriptionId="ntf_a", projectId="prj_a",
        notificationType="webhook", destination=WebhookDestination(url="https://v1.example.com"),
        payload=body or payload(), createdAtMs=1, secretCiphertext="sealed-1",
    )  # fmt: skip


def test_an_unknown_subscription_is_sent_as_the_record_says() -> None:
    subs = Subscriptions()
    assert subs.refusal(note()) is None
    assert subs.current(note()) == note()


def test_the_newest_version_wins_whatever_the_order() -> None:
    subs = Subscriptions()
    subs.apply(b"ntf_a/0", sub(3))
    subs.apply(b"ntf_a/0", sub(2))
    current = subs.current(note())
    assert current.destination == WebhookDestination(url="https://v3.example.com")
    assert current.secretCiphertext == "sealed-3"


def test_a_record_newer_than_what_the_topic_has_shown_so_far_is_kept() -> None:
    subs = Subscriptions()
    subs.apply(b"ntf_a/0", sub(2))
    newer = msgspec.structs.replace(note(), subscriptionVersion=3)
    assert subs.current(newer) == newer


def test_deleted_and_tombstoned_subscriptions_are_refused() -> None:
    subs = Subscriptions()
    subs.apply(b"ntf_a/0", sub(1))
    subs.apply(b"ntf_a/0", sub(2, deleted=True))
    assert subs.refusal(note()) == DELETED
    subs.apply(b"ntf_a/0", None)
    assert subs.refusal(note()) == DELETED


def test_inactive_subscriptions_get_only_test_sends() -> None:
    subs = Subscriptions()
    subs.apply(b"ntf_a/0", sub(2, active=False))
    assert subs.refusal(note()) == INACTIVE
    assert subs.refusal(note(payload("evt_t", test=True))) is None


def test_a_record_written_before_destinations_were_tagged_is_read() -> None:
    subs = Subscriptions()
    untagged = msgspec.json.decode(sub(4))
    untagged["destination"] = {"url": "https://v4.example.com", "standardWebhooks": False}
    subs.apply(b"ntf_a/0", msgspec.json.encode(untagged))
    current = subs.current(note())
    assert current.destination == WebhookDestination(url="https://v4.example.com")
    assert current.subscriptionVersion == 4


def test_garbage_on_the_topic_is_ignored() -> None:
    subs = Subscriptions()
    subs.apply(b"ntf_a/0", b"\xff")
    subs.apply(None, sub(1))
    assert subs.known == {}
