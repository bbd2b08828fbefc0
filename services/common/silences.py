"""When a silence is active and what it matches (pure; shared by the API and the alert engine).

A silence is active from `startsAtMs` until the earliest of `endsAtMs`, `untilMs` and
`endedAtMs` (ended early); a schedule further narrows that to its weekly windows. Each window
begins at the local wall-clock time `start` in the schedule's IANA zone on each listed day and
lasts `durationMinutes` of elapsed time, so daylight-saving changes work out as follows:
- a start that does not exist that day (inside the spring-forward gap, 02:30 in Berlin on the
  last Sunday of March) is read with the offset before the change: it begins as many minutes
  after the gap's start as it names (02:30 CET is 03:30 CEST);
- a start that exists twice (inside the fall-back overlap) is its first occurrence (summer
  time);
- the duration is real time: 01:00 + 120 minutes ends at 02:00 standard time on the fall-back
  night (two hours, though the wall clock then reads one hour later than 01:00 plus one) and
  at 04:00 summer time on the spring-forward night.
Nothing here reads a clock: the engine passes event time, the API its request time.
"""

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from schemas.silences import DAYS, Schedule, SilenceRecord, SilenceState

MINUTE_MS = 60_000
_SPAN_DAYS = 8  # a window lasts at most a week: one starting 8 local days back is over


def end_ms(silence: SilenceRecord) -> int | None:
    """When the silence stops for good (None: a schedule without `until`)."""
    ends = [t for t in (silence.endsAtMs, silence.untilMs, silence.endedAtMs) if t is not None]
    return min(ends) if ends else None


def matches(silence: SilenceRecord, subscription_id: str, workflow_id: str, rule: str) -> bool:
    """Whether the silence's matchers (ANDed; an absent one matches all) take an alert."""
    m = silence.matchers
    return (
        (m.workflowIds is None or workflow_id in m.workflowIds)
        and (m.subscriptionIds is None or subscription_id in m.subscriptionIds)
        and (m.rules is None or rule in m.rules)
    )


def is_active(silence: SilenceRecord, at_ms: int) -> bool:
    """Whether the silence mutes what happens at `at_ms`."""
    end = end_ms(silence)
    if at_ms < silence.startsAtMs or (end is not None and at_ms >= end):
        return False
    return silence.schedule is None or window_at(silence.schedule, at_ms) is not None


def window_at(schedule: Schedule, at_ms: int) -> tuple[int, int] | None:
    """The (merged) weekly window holding `at_ms`, as [start, end) in ms, or None."""
    for start, end in _merged(schedule, at_ms):
        if start <= at_ms < end:
            return start, end
    return None


def next_start(schedule: Schedule, after_ms: int) -> int | None:
    """The start of the first window that begins after `after_ms` (within about a week)."""
    later = [start for start, _ in _merged(schedule, after_ms) if start > after_ms]
    return min(later) if later else None


def state_of(silence: SilenceRecord, now_ms: int) -> SilenceState:
    """`active` now, `pending` (a window or the start still to come) or `expired`."""
    if is_active(silence, now_ms):
        return "active"
    end = end_ms(silence)
    if end is not None and now_ms >= end:
        return "expired"
    if now_ms < silence.startsAtMs or silence.schedule is None:
        return "pending"
    upcoming = next_start(silence.schedule, max(now_ms, silence.startsAtMs))
    return "pending" if upcoming is not None and (end is None or upcoming < end) else "expired"


def next_starts_at(silence: SilenceRecord, now_ms: int) -> int | None:
    """When a schedule's next window opens, if it opens before the silence ends."""
    if silence.schedule is None:
        return None
    after = max(now_ms, silence.startsAtMs - 1)
    upcoming = next_start(silence.schedule, after)
    end = end_ms(silence)
    return upcoming if upcoming is not None and (end is None or upcoming < end) else None


def active_until(silence: SilenceRecord, now_ms: int) -> int | None:
    """While a schedule is active, when its current window closes (or the silence ends)."""
    if silence.schedule is None or not is_active(silence, now_ms):
        return None
    window = window_at(silence.schedule, now_ms)
    assert window is not None
    end = end_ms(silence)
    return window[1] if end is None else min(window[1], end)


def local_start_ms(schedule: Schedule, day: date) -> int:
    """The instant the window of a local date begins (see the module docstring for DST)."""
    hour, minute = (int(part) for part in schedule.start.split(":"))
    local = datetime(day.year, day.month, day.day, hour, minute, tzinfo=ZoneInfo(schedule.timezone))
    return int(local.timestamp()) * 1000


def _windows(schedule: Schedule, around_ms: int) -> list[tuple[int, int]]:
    """Every window starting within 8 local days either side of `around_ms`, in order."""
    zone = ZoneInfo(schedule.timezone)
    today = datetime.fromtimestamp(around_ms / 1000, UTC).astimezone(zone).date()
    days = {DAYS.index(d) for d in schedule.daysOfWeek}
    length = schedule.durationMinutes * MINUTE_MS
    out = []
    for offset in range(-_SPAN_DAYS, _SPAN_DAYS + 1):
        day = today + timedelta(days=offset)
        if day.weekday() in days:
            start = local_start_ms(schedule, day)
            out.append((start, start + length))
    return out


def _merged(schedule: Schedule, around_ms: int) -> list[tuple[int, int]]:
    """The windows around `around_ms`, overlapping or touching ones joined."""
    merged: list[tuple[int, int]] = []
    for start, end in _windows(schedule, around_ms):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged
