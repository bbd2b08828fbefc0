"""Typed destinations on the topic records, and records written before destinations had a tag."""

from typing import Any

import msgspec
import pytest

from schemas.destinations import (
    DiscordDestination,
    EmailDestination,
    PagerDutyDestination,
    RecordDecoder,
    SlackDestination,
    TeamsDestination,
    WebhookDestination,
)
from schemas.events import ExecutionRecord
from schemas.notifications import NotificationRecord, SubscriptionRecord

SUBSCRIPTION: dict[str, Any] = {
    "kind": "subscription", "v": 1, "id": "ntf_1", "projectId": "prj_1", "version": 2,
    "deleted": False, "notificationType": "webhook", "workflowIds": [], "allWorkflows": True,
    "levelFilter": ["error", "info"], "triggerFilter": [], "includeFinalOutput": False,
    "includeTraceSpans": False, "includeRateLimits": False, "includeUsageData": False,
    "active": True, "createdAtMs": 1, "secretCiphertext": "sealed",
}  # fmt: skip
NOTIFICATION: dict[str, Any] = {
    "kind": "notification", "v": 1, "deliveryId": "dlv_1", "eventId": "evt_1",
    "subscriptionId": "ntf_1", "projectId": "prj_1", "notificationType": "webhook",
    "payload": {"id": "evt_1", "type": "workflow.execution.completed", "timestamp": 1,
                "data": {"workflowId": "wf_1"}, "links": {}},
    "createdAtMs": 1,
}  # fmt: skip
# Destinations as records carried them before they were tagged (services/common/subscriptions).
UNTAGGED = [
    (
        "webhook",
        {"url": "https://h.example.com/x", "standardWebhooks": True,
         "previousSecretCiphertext": "old", "previousSecretUntilMs": 99},
        WebhookDestination(url="https://h.example.com/x", standardWebhooks=True,
                           previousSecretCiphertext="old", previousSecretUntilMs=99),
    ),
    ("webhook", {"url": "https://h.example.com/x", "standardWebhooks": False},
     WebhookDestination(url="https://h.example.com/x")),
    ("email", {"recipients": ["a@x.io", "b@x.io"]}, EmailDestination(["a@x.io", "b@x.io"])),
    ("email", {"recipients": None}, EmailDestination()),
    ("slack", {"channelName": "#ops"}, SlackDestination("#ops")),
    ("slack", {"channelName": None}, SlackDestination()),
    ("pagerduty", {}, PagerDutyDestination()),
    ("teams", {}, TeamsDestination()),
    ("discord", {}, DiscordDestination()),
]  # fmt: skip

subscriptions = RecordDecoder(SubscriptionRecord)
notifications = RecordDecoder(NotificationRecord)
markers: RecordDecoder[ExecutionRecord | SubscriptionRecord] = RecordDecoder(
    ExecutionRecord | SubscriptionRecord
)


def encoded(base: dict[str, Any], kind: str, destination: Any) -> bytes:
    return msgspec.json.encode({**base, "notificationType": kind, "destination": destination})


@pytest.mark.parametrize(("kind", "untagged", "typed"), UNTAGGED)
def test_records_written_before_destinations_were_tagged_are_read(
    kind: str, untagged: dict[str, Any], typed: Any
) -> None:
    assert subscriptions.decode(encoded(SUBSCRIPTION, kind, untagged)).destination == typed
    assert notifications.decode(encoded(NOTIFICATION, kind, untagged)).destination == typed
    marker = markers.decode(encoded(SUBSCRIPTION, kind, untagged))
    assert isinstance(marker, SubscriptionRecord) and marker.destination == typed


@pytest.mark.parametrize(("kind", "untagged", "typed"), UNTAGGED)
def test_a_destination_is_written_with_its_type_and_read_back(
    kind: str, untagged: dict[str, Any], typed: Any
) -> None:
    record = subscriptions.decode(encoded(SUBSCRIPTION, kind, untagged))
    value = msgspec.json.encode(record)
    assert msgspec.json.decode(value)["destination"]["type"] == kind
    assert msgspec.json.decode(value, type=SubscriptionRecord) == record


def test_the_fields_an_earlier_reader_looks_up_keep_their_names() -> None:
    rotated = WebhookDestination(
        url="https://h.example.com", previousSecretCiphertext="old", previousSecretUntilMs=9
    )
    assert msgspec.to_builtins(rotated) == {
        "type": "webhook", "url": "https://h.example.com", "previousSecretCiphertext": "old",
        "previousSecretUntilMs": 9,
    }  # fmt: skip
    assert msgspec.to_builtins(EmailDestination(["a@x.io"])) == {
        "type": "email", "recipients": ["a@x.io"]
    }  # fmt: skip


@pytest.mark.parametrize(
    "destination",
    [
        {"type": "pager", "url": "https://h.example.com"},  # an unknown channel: not retagged
        {"url": 5},
        {},
        [],
        "https://h.example.com",
        None,
    ],
)
def test_a_bad_destination_is_still_a_validation_error(destination: Any) -> None:
    with pytest.raises(msgspec.ValidationError):
        notifications.decode(encoded(NOTIFICATION, "webhook", destination))


def test_a_record_that_is_not_one_is_a_decode_or_validation_error() -> None:
    deep = b'{"destination":' + b"[" * 5000 + b"]" * 5000 + b"}"
    for value in (b"", b"{", b"[1,2]", b'{"kind":"notification"}', deep):
        with pytest.raises((msgspec.DecodeError, msgspec.ValidationError, RecursionError)):
            notifications.decode(value)
