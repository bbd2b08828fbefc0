"""Where a notification goes: one tagged Struct per channel (contract section 6).

Both topic records of a subscription (`SubscriptionRecord`, `NotificationRecord`) carry its
destination as `{"type": <channel>, ...}`. Records written before destinations were tagged
hold the same fields without `type`; `RecordDecoder` reads them too, taking the channel from
the record's `notificationType`, so a compacted topic, a changelog or a retry tier written by
an earlier release stays readable. A new channel is one more Struct in `Destination`.
"""

from typing import Any, Generic, TypeVar, overload

import msgspec
from msgspec import Raw, Struct

T = TypeVar("T")


class WebhookDestination(Struct, frozen=True, omit_defaults=True, tag="webhook", tag_field="type"):
    """A webhook receiver, whether Standard Webhooks headers go too, and the signing secret a
    rotation replaced (sealed like the current one) with the end of its grace period."""

    url: str
    standardWebhooks: bool = False
    previousSecretCiphertext: str | None = None
    previousSecretUntilMs: int | None = None


class EmailDestination(Struct, frozen=True, omit_defaults=True, tag="email", tag_field="type"):
    """The addresses an email goes to."""

    recipients: list[str] = []


class SlackDestination(Struct, frozen=True, omit_defaults=True, tag="slack", tag_field="type"):
    """A Slack channel by name; the incoming webhook URL is the sealed secret of the record."""

    channelName: str | None = None


class PagerDutyDestination(
    Struct, frozen=True, omit_defaults=True, tag="pagerduty", tag_field="type"
):
    """A PagerDuty service; its Events API v2 routing key is the sealed secret of the record."""


class TeamsDestination(Struct, frozen=True, omit_defaults=True, tag="teams", tag_field="type"):
    """A Microsoft Teams channel; its webhook (or Workflows) URL is the sealed secret."""


class DiscordDestination(Struct, frozen=True, omit_defaults=True, tag="discord", tag_field="type"):
    """A Discord channel; its webhook URL is the sealed secret of the record."""


Destination = (
    WebhookDestination
    | EmailDestination
    | SlackDestination
    | PagerDutyDestination
    | TeamsDestination
    | DiscordDestination
)

_MEMBERS = msgspec.json.Decoder(dict[str, Raw])
_NULL = b"null"


class RecordDecoder(Generic[T]):
    """A JSON decoder of records that carry a destination, tagged or written before tags."""

    @overload
    def __init__(self: "RecordDecoder[T]", type: type[T]) -> None: ...
    @overload
    def __init__(self: "RecordDecoder[Any]", type: Any) -> None: ...
    def __init__(self, type: Any) -> None:
        self._decoder: msgspec.json.Decoder[T] = msgspec.json.Decoder(type)

    def decode(self, data: bytes) -> T:
        """The record; a destination without `type` takes the record's `notificationType`."""
        try:
            return self._decoder.decode(data)
        except msgspec.ValidationError as error:
            tagged = _tagged(data)
            if tagged is None:
                raise error from None
            return self._decoder.decode(tagged)


def _tagged(data: bytes) -> bytes | None:
    """The record with its untagged destination tagged, or None when there is nothing to tag.

    Values other than the destination's stay the bytes they were; a destination field that is
    null is dropped, as every field the Structs default is absent rather than null.
    """
    try:
        record = _MEMBERS.decode(data)
        destination = _MEMBERS.decode(record["destination"])
        kind = record["notificationType"]
    except (msgspec.DecodeError, msgspec.ValidationError, KeyError, RecursionError):
        return None
    if "type" in destination:
        return None
    fields = {k: v for k, v in destination.items() if bytes(v) != _NULL}
    record["destination"] = Raw(msgspec.json.encode({"type": kind, **fields}))
    return msgspec.json.encode(record)
