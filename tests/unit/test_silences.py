"""Silences as pure functions: matchers, one-off and weekly windows across daylight saving."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import msgspec
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from schemas.silences import DAYS, Matchers, Schedule, SilenceBody, SilenceRecord
from services.common.silences import (
    active_until,
    is_active,
    matches,
    next_starts_at,
    state_of,
    window_at,
)

BERLIN = "Europe/Berlin"
NEW_YORK = "America/New_York"


def ms(text: str, zone: str = "UTC") -> int:
    """Epoch ms of a wall-clock time in a zone (fold 0: the first of two)."""
    moment = datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone))
    return int(moment.timestamp() * 1000)


def weekly(zone: str, days: list[str], start: str, minutes: int, **fields: object) -> SilenceRecord:
    schedule = msgspec.convert(
        {"timezone": zone, "daysOfWeek": days, "start": start, "durationMinutes": minutes},
        Schedule,
    )
    return SilenceRecord(
        v=1, id="sil_1", projectId="prj_1", version=1, matchers=Matchers(),
        createdAtMs=0, startsAtMs=int(fields.pop("starts", 0)), schedule=schedule,
        **fields,  # type: ignore[arg-type]
    )  # fmt: skip


def once(start_ms: int, end_ms: int, matchers: Matchers | None = None) -> SilenceRecord:
    return SilenceRecord(
        v=1, id="sil_1", projectId="prj_1", version=1, matchers=matchers or Matchers(),
        createdAtMs=start_ms, startsAtMs=start_ms, endsAtMs=end_ms,
    )  # fmt: skip


# ---- matchers --------------------------------------------------------------------------


def test_absent_matchers_match_everything() -> None:
    assert matches(once(0, 1), "ntf_a", "wf", "no_activity")


def test_matchers_are_anded() -> None:
    silence = once(0, 1, Matchers(workflowIds=["wf1"], rules=["error_count"]))
    assert matches(silence, "ntf_a", "wf1", "error_count")
    assert not matches(silence, "ntf_a", "wf2", "error_count")
    assert not matches(silence, "ntf_a", "wf1", "no_activity")


def test_a_subscription_matcher_takes_only_its_subscriptions() -> None:
    silence = once(0, 1, Matchers(subscriptionIds=["ntf_a"]))
    assert matches(silence, "ntf_a", "wf", "cost_threshold")
    assert not matches(silence, "ntf_b", "wf", "cost_threshold")


# ---- one-off -----------------------------------------------------------------------------


def test_a_one_off_silence_is_active_from_its_start_until_its_end() -> None:
    silence = once(1000, 2000)
    assert [is_active(silence, t) for t in (999, 1000, 1999, 2000)] == [False, True, True, False]
    assert [state_of(silence, t) for t in (999, 1000, 2000)] == ["pending", "active", "expired"]


def test_ending_early_stops_it_at_that_time() -> None:
    silence = msgspec.structs.replace(once(1000, 5000), endedAtMs=1500)
    assert is_active(silence, 1499) and not is_active(silence, 1500)
    assert state_of(silence, 1600) == "expired"


# ---- weekly, around the 2026 daylight-saving changes ------------------------------------
# Europe/Berlin: 2026-03-29 02:00 CET -> 03:00 CEST; 2026-10-25 03:00 CEST -> 02:00 CET.
# America/New_York: 2026-03-08 02:00 EST -> 03:00 EDT; 2026-11-01 02:00 EDT -> 01:00 EST.


def test_a_weekly_window_follows_local_time_across_spring_forward_in_berlin() -> None:
    silence = weekly(BERLIN, ["sat", "sun", "mon"], "22:00", 60)
    # Saturday before the change (CET, UTC+1) and Monday after it (CEST, UTC+2): 22:00 local.
    assert is_active(silence, ms("2026-03-28T21:00:00"))  # 22:00 CET
    assert not is_active(silence, ms("2026-03-28T20:59:00"))
    assert is_active(silence, ms("2026-03-30T20:00:00"))  # 22:00 CEST
    assert not is_active(silence, ms("2026-03-30T21:00:00"))  # 23:00 CEST: over
    assert not is_active(silence, ms("2026-03-30T19:59:00"))


def test_a_start_in_the_spring_forward_gap_begins_after_the_gap() -> None:
    silence = weekly(BERLIN, ["sun"], "02:30", 60)
    # 02:30 does not exist on 2026-03-29: read as 02:30 CET = 03:30 CEST = 01:30 UTC.
    assert window_at(silence.schedule, ms("2026-03-29T01:30:00")) == (  # type: ignore[arg-type]
        ms("2026-03-29T01:30:00"),
        ms("2026-03-29T02:30:00"),
    )
    assert not is_active(silence, ms("2026-03-29T01:29:00"))
    # A week later it is 02:30 CEST again.
    assert is_active(silence, ms("2026-04-05T02:30:00", BERLIN))
    assert not is_active(silence, ms("2026-04-05T02:29:00", BERLIN))


def test_a_window_over_the_fall_back_hour_lasts_its_real_duration() -> None:
    silence = weekly(BERLIN, ["sun"], "01:00", 120)
    start = ms("2026-10-25T01:00:00", BERLIN)  # 01:00 CEST = 23:00 UTC on Saturday
    assert start == ms("2026-10-24T23:00:00")
    assert active_until(silence, start) == start + 120 * 60_000  # 02:00 CET, wall clock
    assert is_active(silence, ms("2026-10-25T00:59:00"))  # 02:59 CEST ... then 02:00 CET
    assert not is_active(silence, ms("2026-10-25T01:00:00"))  # 02:00 CET: two hours later


def test_an_ambiguous_start_is_its_first_occurrence() -> None:
    silence = weekly(NEW_YORK, ["sun"], "01:30", 30)
    # 01:30 happens twice on 2026-11-01 in New York: EDT (05:30 UTC) first, then EST.
    assert is_active(silence, ms("2026-11-01T05:30:00"))
    assert not is_active(silence, ms("2026-11-01T06:30:00"))  # 01:30 EST


def test_new_york_windows_keep_local_time_across_both_changes() -> None:
    silence = weekly(NEW_YORK, ["fri"], "09:00", 30)
    assert is_active(silence, ms("2026-03-06T14:00:00"))  # 09:00 EST
    assert is_active(silence, ms("2026-03-13T13:00:00"))  # 09:00 EDT
    assert not is_active(silence, ms("2026-03-13T14:00:00"))
    assert is_active(silence, ms("2026-11-06T14:00:00"))  # 09:00 EST again


def test_a_spring_forward_window_lasts_its_real_duration() -> None:
    silence = weekly(NEW_YORK, ["sun"], "01:00", 120)
    start = ms("2026-03-08T01:00:00", NEW_YORK)  # EST
    assert active_until(silence, start) == ms("2026-03-08T04:00:00", NEW_YORK)  # EDT


def test_schedule_state_next_start_and_until() -> None:
    silence = weekly(
        BERLIN, ["mon"], "22:00", 60, starts=ms("2026-06-01T00:00:00"),
        untilMs=ms("2026-06-16T00:00:00"),
    )  # fmt: skip
    before = ms("2026-05-30T12:00:00")
    assert state_of(silence, before) == "pending"
    assert next_starts_at(silence, before) == ms("2026-06-01T22:00:00", BERLIN)
    assert state_of(silence, ms("2026-06-08T20:30:00")) == "active"
    assert active_until(silence, ms("2026-06-08T20:30:00")) == ms("2026-06-08T23:00:00", BERLIN)
    assert state_of(silence, ms("2026-06-10T00:00:00")) == "pending"
    # The next Monday window (06-22) opens after `until`: nothing left.
    assert state_of(silence, ms("2026-06-16T00:00:00")) == "expired"
    assert state_of(silence, ms("2026-06-15T23:00:00")) == "expired"
    assert next_starts_at(silence, ms("2026-06-15T23:00:00")) is None


def test_overlapping_daily_windows_join() -> None:
    silence = weekly("UTC", list(DAYS), "00:00", 1500)  # 25 h every day: always on
    at = ms("2026-05-05T12:00:00")
    window = window_at(silence.schedule, at)  # type: ignore[arg-type]
    assert window is not None and window[1] - window[0] > 7 * 24 * 3600 * 1000


# ---- bodies ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"comment": "x"}, "endsAt"),
        ({"comment": "x", "endsAt": "2026-01-01T00:00:00Z",
          "schedule": {"timezone": "UTC", "daysOfWeek": ["mon"], "start": "01:00",
                       "durationMinutes": 5}}, "endsAt"),
        ({"comment": "x", "schedule": {"timezone": "Mars/Olympus", "daysOfWeek": ["mon"],
                                       "start": "01:00", "durationMinutes": 5}},
         "timezone"),
        ({"comment": "x", "endsAt": "2026-01-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
         "until"),
        ({"comment": "x", "endsAt": "2300-01-01T00:00:00Z"}, "endsAt"),
    ],
)  # fmt: skip
def test_bodies_out_of_bounds_are_refused(body: dict[str, object], field: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=field.replace(".", r"\.")):
        msgspec.convert(body, SilenceBody)


@pytest.mark.parametrize(
    "schedule",
    [
        {"timezone": "UTC", "daysOfWeek": ["mon"], "start": "24:00", "durationMinutes": 5},
        {"timezone": "UTC", "daysOfWeek": ["mon"], "start": "01:00", "durationMinutes": 0},
        {"timezone": "UTC", "daysOfWeek": ["mon"], "start": "01:00", "durationMinutes": 10081},
        {"timezone": "UTC", "daysOfWeek": [], "start": "01:00", "durationMinutes": 5},
        {"timezone": "UTC", "daysOfWeek": ["monday"], "start": "01:00", "durationMinutes": 5},
    ],
)
def test_schedules_out_of_bounds_are_refused(schedule: dict[str, object]) -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"comment": "x", "schedule": schedule}, SilenceBody)


def test_matcher_lists_are_bounded() -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"workflowIds": [f"w{i}" for i in range(101)]}, Matchers)
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"workflowIds": ["x" * 257]}, Matchers)


# ---- properties --------------------------------------------------------------------------

ZONES = st.sampled_from([BERLIN, NEW_YORK, "UTC", "Australia/Lord_Howe", "Asia/Kolkata"])
INSTANTS = st.integers(ms("2025-01-01T00:00:00"), ms("2028-01-01T00:00:00"))


def _schedule(zone: str, days: list[str], hour: int, minute: int, minutes: int) -> Schedule:
    start = f"{hour:02}:{minute:02}"
    raw = {"timezone": zone, "daysOfWeek": days, "start": start, "durationMinutes": minutes}
    return msgspec.convert(raw, Schedule)


SCHEDULES = st.builds(
    _schedule,
    ZONES,
    st.lists(st.sampled_from(DAYS), min_size=1, max_size=7, unique=True),
    st.integers(0, 23),
    st.integers(0, 59),
    st.integers(1, 10_080),
)


@settings(max_examples=200, deadline=None)
@given(SCHEDULES, INSTANTS)
def test_an_instant_in_a_window_is_active_and_the_window_holds_it(
    schedule: Schedule, at: int
) -> None:
    silence = SilenceRecord(v=1, id="s", projectId="p", version=1, matchers=Matchers(),
                            createdAtMs=0, startsAtMs=0, schedule=schedule)  # fmt: skip
    window = window_at(schedule, at)
    assert is_active(silence, at) == (window is not None)
    if window is not None:
        assert window[0] <= at < window[1]
        assert state_of(silence, at) == "active"
        assert active_until(silence, at) == window[1]
    else:
        assert state_of(silence, at) == "pending"
        upcoming = next_starts_at(silence, at)
        assert upcoming is not None and at < upcoming <= at + 8 * 24 * 3600 * 1000
        assert is_active(silence, upcoming)


@settings(max_examples=200, deadline=None)
@given(SCHEDULES, INSTANTS)
def test_a_window_starts_at_the_local_time_on_a_listed_day_unless_in_a_gap(
    schedule: Schedule, at: int
) -> None:
    silence = SilenceRecord(v=1, id="s", projectId="p", version=1, matchers=Matchers(),
                            createdAtMs=0, startsAtMs=0, schedule=schedule)  # fmt: skip
    upcoming = next_starts_at(silence, at)
    assume(upcoming is not None)  # joined windows that never close have no next start
    assert upcoming is not None
    local = datetime.fromtimestamp(upcoming / 1000, UTC).astimezone(ZoneInfo(schedule.timezone))
    naive = local.replace(tzinfo=None)
    wanted = datetime.combine(naive.date(), datetime.strptime(schedule.start, "%H:%M").time())
    if naive != wanted:  # only a start inside a spring-forward gap moves, by the gap
        assert timedelta(0) < naive - wanted <= timedelta(hours=1)
        wanted_day = wanted.date()
    else:
        wanted_day = naive.date()
    assert DAYS[wanted_day.weekday()] in schedule.daysOfWeek


@settings(max_examples=200, deadline=None)
@given(INSTANTS, st.integers(1, 10**9), INSTANTS)
def test_a_one_off_is_active_exactly_between_its_times(start: int, length: int, at: int) -> None:
    silence = once(start, start + length)
    assert is_active(silence, at) == (start <= at < start + length)
