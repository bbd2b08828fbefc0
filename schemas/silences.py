"""Silences and recurring maintenance windows (contract section 6, v1.1): API bodies and the
record on the compacted `silences` topic.

A silence mutes the alert notifications it matches while it is active: once between `startsAt`
and `endsAt`, or weekly in an IANA time zone (`schedule`, until `until`). Matchers are ANDed; an
absent matcher matches everything.
"""

from datetime import datetime
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from msgspec import Meta, Struct

from schemas.alerts import Rule
from schemas.bounds import Id, field_error, time_error

Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
SilenceState = Literal["active", "pending", "expired"]
MAX_MATCHER_IDS = 100
MAX_COMMENT = 1000
MAX_DURATION_MINUTES = 10_080  # one week
AwareDatetime = Annotated[datetime, Meta(tz=True)]
Ids = Annotated[list[Id], Meta(min_length=1, max_length=MAX_MATCHER_IDS)]
Clock = Annotated[str, Meta(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]
Zone = Annotated[str, Meta(min_length=1, max_length=64)]


def zone_error(name: str) -> str | None:
    """Why `name` is not an IANA time zone this system knows, or None."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return f"Unknown IANA time zone {name[:64]!r}."
    return None


class Matchers(Struct, frozen=True, omit_defaults=True, forbid_unknown_fields=True):
    """What a silence mutes: alerts of these workflows AND subscriptions AND rules."""

    workflowIds: Ids | None = None
    subscriptionIds: Ids | None = None
    rules: Annotated[list[Rule], Meta(min_length=1, max_length=7)] | None = None


class Schedule(Struct, frozen=True, forbid_unknown_fields=True):
    """A weekly window: from `start` (local wall-clock time in `timezone`) on each of
    `daysOfWeek`, for `durationMinutes` of elapsed time."""

    timezone: Zone
    daysOfWeek: Annotated[list[Day], Meta(min_length=1, max_length=7)]
    start: Clock
    durationMinutes: Annotated[int, Meta(ge=1, le=MAX_DURATION_MINUTES)]

    def __post_init__(self) -> None:
        """Check the zone against the system's time-zone database."""
        if problem := zone_error(self.timezone):
            raise field_error("timezone", problem)


class SilenceBody(Struct, frozen=True, forbid_unknown_fields=True):
    """Body of `POST /api/v1/silences`: `endsAt` (one-off) or `schedule` (weekly)."""

    comment: Annotated[str, Meta(min_length=1, max_length=MAX_COMMENT)]
    matchers: Matchers = Matchers()
    startsAt: AwareDatetime | None = None
    endsAt: AwareDatetime | None = None
    schedule: Schedule | None = None
    until: AwareDatetime | None = None

    def __post_init__(self) -> None:
        """Bound the times and require exactly one of `endsAt` and `schedule`."""
        for name in ("startsAt", "endsAt", "until"):
            moment = getattr(self, name)
            if moment is not None and (problem := time_error(moment)):
                raise field_error(name, problem)
        if (self.endsAt is None) == (self.schedule is None):
            raise field_error("endsAt", "Give either endsAt (one-off) or schedule (weekly).")
        if self.schedule is None and self.until is not None:
            raise field_error("until", "Only a schedule has an until.")


class SilenceRecord(Struct, frozen=True, tag="silence", tag_field="kind"):
    """A silence on the compacted `silences` topic (key `<id>/<partition>`), broadcast to every
    partition; times in epoch ms. `endedAtMs` is set when it was ended early (that version is
    kept); the engine decides from these fields, the log order and event time alone.

    Each version is also a marker on `executions` (same tag, `kind: "silence"`), written to
    every partition before the compacted records, like a subscription's: `markerOffset` is then
    the offset of the marker on this record's partition, after which the alert engine applies
    this version (None in the marker itself and in records written before markers existed)."""

    v: int
    id: str
    projectId: str
    version: int
    matchers: Matchers
    createdAtMs: int
    startsAtMs: int
    endsAtMs: int | None = None
    schedule: Schedule | None = None
    untilMs: int | None = None
    endedAtMs: int | None = None
    markerOffset: int | None = None


class Silence(Struct, frozen=True, omit_defaults=True):
    """A silence as the API shows it, with its state at the time of the answer; a schedule's
    `activeUntil` (while active) or `nextStartsAt` (the next window, if any)."""

    id: str
    state: SilenceState
    matchers: Matchers
    comment: str
    createdBy: str
    createdAt: str
    startsAt: str
    endsAt: str | None = None
    schedule: Schedule | None = None
    until: str | None = None
    endedAt: str | None = None
    nextStartsAt: str | None = None
    activeUntil: str | None = None
