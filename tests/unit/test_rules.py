"""The alert rules engine: the seven rules, cooldowns, episodes, ids and restart-proof state."""

import itertools
import random
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from decimal import Decimal

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.alerts import Alert, AlertConfig
from schemas.events import Cost
from services.alerts.checks import window_ms
from services.alerts.rules import arm, disarm, facts_of, on_execution, on_tick
from services.alerts.state import (
    DIGEST_BYTES,
    FINE_MINUTES,
    HORIZON_MINUTES,
    HOUR_MINUTES,
    SEEN_LIMIT,
    STREAK_LIMIT,
    ExecutionFacts,
    Subscription,
    WorkflowState,
    digests_add,
    digests_have,
    has_seen,
    seen_digest,
    streak,
    window_totals,
)
from tests.factories import execution

SECOND, MINUTE, HOUR = 1000, 60_000, 3_600_000
T0 = int(datetime(2026, 1, 1, 10, 0, tzinfo=UTC).timestamp() * 1000)

Input = ExecutionFacts | int  # an int is a tick at that event time


def watch(rule: str, sub_id: str = "ntf_a", **fields: object) -> Subscription:
    config = msgspec.convert({"rule": rule, **fields}, AlertConfig)
    return Subscription(id=sub_id, config=config)


def run(
    at_ms: int,
    execution_id: str | None = None,
    *,
    failed: bool = False,
    duration_ms: int = 100,
    cost: str | None = None,
    workflow_id: str = "w1",
) -> ExecutionFacts:
    return ExecutionFacts(
        execution_id=execution_id or f"e{at_ms}",
        workflow_id=workflow_id,
        ended_ms=at_ms,
        failed=failed,
        duration_ms=duration_ms,
        cost=None if cost is None else Decimal(cost),
    )


def replay(
    subs: Sequence[Subscription],
    inputs: Iterable[Input],
    state: WorkflowState | None = None,
    cooldown_s: int = 3600,
) -> tuple[WorkflowState, list[Alert]]:
    state = state or WorkflowState(workflow_id="w1")
    alerts: list[Alert] = []
    for item in inputs:
        if isinstance(item, int):
            state, out = on_tick(state, subs, item, cooldown_s)
        else:
            state, out = on_execution(state, subs, item, cooldown_s)
        alerts += [a for a in out if a.notify]  # the notifications (not the quiet resolves)
    return state, alerts


def kinds(alerts: Sequence[Alert]) -> list[tuple[str, int]]:
    return [(a.kind, a.atMs) for a in alerts]


def restart(state: WorkflowState) -> WorkflowState:
    return msgspec.json.decode(msgspec.json.encode(state), type=WorkflowState)


# Duplicates and event-time order


def test_duplicate_delivery_does_not_advance_a_streak_or_a_count() -> None:
    failure = run(T0, "e1", failed=True)
    subs = [
        watch("consecutive_failures", "ntf_streak", consecutiveFailures=2),
        watch("error_count", "ntf_count", errorCountThreshold=1),
    ]
    state, alerts = replay(subs, [failure, failure, failure])
    assert streak(state) == 1
    assert window_totals(state, T0, HOUR).errors == 1
    assert alerts == []


def test_out_of_order_late_success_leaves_a_streak_of_one() -> None:
    failures = [run(T0 + m * MINUTE, failed=True) for m in (0, 5, 10)]
    state, _ = replay([], [*failures, run(T0 + 7 * MINUTE)])
    assert streak(state) == 1


def test_late_success_ends_the_episode_with_a_resolve() -> None:
    sub = watch("consecutive_failures", consecutiveFailures=3, notifyOnResolve=True)
    failures = [run(T0 + m * MINUTE, failed=True) for m in (0, 5, 10)]
    _, alerts = replay([sub], [*failures, run(T0 + 7 * MINUTE)])
    assert [a.kind for a in alerts] == ["fired", "resolved"]
    assert alerts[1].observed == 1


# consecutive_failures


def test_consecutive_failures_fires_when_the_streak_reaches_n() -> None:
    sub = watch("consecutive_failures")
    _, two = replay([sub], [run(T0 + i, failed=True) for i in range(2)])
    _, three = replay([sub], [run(T0 + i, failed=True) for i in range(3)])
    assert two == []
    assert [(a.kind, a.observed, a.threshold) for a in three] == [("fired", Decimal(3), Decimal(3))]
    assert three[0].executionId == "e" + str(T0 + 2)


def test_success_between_failures_restarts_the_streak() -> None:
    sub = watch("consecutive_failures", consecutiveFailures=2)
    inputs = [run(T0, failed=True), run(T0 + 1), run(T0 + 2, failed=True)]
    state, alerts = replay([sub], inputs)
    assert streak(state) == 1
    assert alerts == []


def test_cancelled_execution_counts_as_not_failed() -> None:
    event = execution(
        "e1", "w1", ended=datetime(2026, 1, 1, 10, 0, 2, tzinfo=UTC), duration_ms=2000,
        status="cancelled", totalDurationMs=None,  # the duration comes from the timestamps
    )  # fmt: skip
    facts = facts_of(event)
    assert not facts.failed
    assert facts.duration_ms == 2000
    assert facts_of(msgspec.structs.replace(event, status="error")).failed


# failure_rate


def test_failure_rate_four_of_four_failed_does_not_fire() -> None:
    sub = watch("failure_rate", windowHours=1)
    old = run(T0 - 2 * HOUR)  # the window is long full
    _, alerts = replay(
        [sub], [old, *(run(T0 + i * MINUTE, failed=True) for i in range(4)), T0 + 5 * MINUTE]
    )
    assert alerts == []


def test_failure_rate_fifth_fires_only_once_a_full_window_has_passed_since_first_seen() -> None:
    sub = watch("failure_rate", windowHours=1)
    early = [run(T0 + m * MINUTE, failed=True) for m in (0, 50, 51, 52, 53)]
    state, alerts = replay([sub], early)
    assert alerts == []  # five of five, but only 53 minutes since the first execution seen
    _, alerts = replay([sub], [run(T0 + HOUR + MINUTE, failed=True)], state)
    assert [(a.kind, a.observed) for a in alerts] == [("fired", Decimal("100.00"))]


def test_failure_rate_fires_at_the_tick_where_the_window_becomes_full() -> None:
    sub = watch("failure_rate", windowHours=1)
    early = [run(T0 + i * SECOND, failed=True) for i in range(5)]
    _, alerts = replay(
        [sub], [*early, T0 + 30 * MINUTE, T0 + HOUR - 1, T0 + HOUR, T0 + HOUR + MINUTE]
    )
    assert kinds(alerts) == [("fired", T0 + HOUR)]
    assert alerts[0].executionId is None


def test_failure_rate_exactly_at_the_threshold_does_not_fire() -> None:
    sub = watch("failure_rate", windowHours=1, failureRatePercent=50)
    history = [run(T0 - 2 * HOUR)]
    flags = [True, False] * 5
    runs = [run(T0 + i * SECOND, failed=f) for i, f in enumerate(flags)]
    state, alerts = replay([sub], [*history, *runs])
    assert window_totals(state, T0 + MINUTE, HOUR)[:2] == (10, 5)
    assert [a for a in alerts if a.observed == 50] == []
    _, tick = replay([sub], [T0 + MINUTE], state)
    assert tick == []


def test_failure_rate_one_of_five_against_twenty_percent_does_not_fire() -> None:
    sub = watch("failure_rate", windowHours=1, failureRatePercent=20)
    runs = [run(T0 - 2 * HOUR), *(run(T0 + i, failed=i == 0) for i in range(5))]
    _, alerts = replay([sub], [*runs, T0 + MINUTE])
    assert alerts == []
    _, two = replay([sub], [*runs, run(T0 + 5, failed=True), T0 + MINUTE])
    assert [a.kind for a in two] == ["fired"]  # 2 of 6 = 33% > 20%


def test_failure_rate_full_window_state_survives_a_restart() -> None:
    sub = watch("failure_rate", windowHours=1)
    state, _ = replay([sub], [run(T0 + i, failed=True) for i in range(5)])
    _, alerts = replay([sub], [T0 + HOUR], restart(state))
    assert kinds(alerts) == [("fired", T0 + HOUR)]


def test_failure_rate_resolves_when_the_rate_drops() -> None:
    sub = watch("failure_rate", windowHours=1, notifyOnResolve=True)
    failures = [run(T0 + i, failed=True) for i in range(5)]
    successes = [run(T0 + HOUR + i * SECOND) for i in range(1, 6)]
    _, alerts = replay([sub], [*failures, T0 + HOUR, *successes])
    assert [a.kind for a in alerts] == ["fired", "resolved"]
    assert alerts[1].reason.startswith("Resolved: 5 of 10 executions failed (50.00%)")


# error_count


def test_error_count_fires_on_a_burst_straddling_an_hour_boundary() -> None:
    sub = watch("error_count", errorCountThreshold=10)
    before = [run(T0 + HOUR - 10 * SECOND + i, failed=True) for i in range(6)]
    after = [run(T0 + HOUR + 5 * SECOND + i, failed=True) for i in range(5)]
    _, alerts = replay([sub], [*before, *after])
    assert [(a.kind, a.observed, a.executionId) for a in alerts] == [
        ("fired", Decimal(11), after[-1].execution_id)
    ]


def test_error_count_window_defaults_to_one_hour_and_other_rules_to_24() -> None:
    assert window_ms(AlertConfig(rule="error_count")) == HOUR
    assert window_ms(AlertConfig(rule="failure_rate")) == 24 * HOUR
    assert window_ms(AlertConfig(rule="error_count", windowHours=1 / 60)) == MINUTE


def test_error_count_errors_age_out_of_the_sliding_window_on_ticks() -> None:
    sub = watch("error_count", errorCountThreshold=2, notifyOnResolve=True)
    errors = [run(T0 + i * SECOND, failed=True) for i in range(3)]
    _, alerts = replay([sub], [*errors, T0 + HOUR, T0 + HOUR + MINUTE])
    assert kinds(alerts) == [("fired", T0 + 2 * SECOND), ("resolved", T0 + HOUR + MINUTE)]


# latency_threshold and latency_spike


def test_latency_threshold_fires_on_one_slow_execution() -> None:
    sub = watch("latency_threshold")
    _, alerts = replay([sub], [run(T0, duration_ms=30_000), run(T0 + 1, duration_ms=30_001)])
    assert [(a.observed, a.threshold) for a in alerts] == [(Decimal(30_001), Decimal(30_000))]


def test_latency_spike_baseline_excludes_the_current_execution() -> None:
    sub = watch("latency_spike", latencySpikePercent=100)
    earlier = [run(T0 + i, duration_ms=1000) for i in range(5)]
    # Counting itself, 2001 ms would raise the mean to 1166.8 ms and the limit above 2001 ms.
    _, alerts = replay([sub], [*earlier, run(T0 + MINUTE, duration_ms=2001)])
    assert [(a.observed, a.threshold) for a in alerts] == [(Decimal(2001), Decimal("2000.00"))]


def test_latency_spike_exactly_at_the_limit_does_not_fire() -> None:
    sub = watch("latency_spike", latencySpikePercent=100)
    earlier = [run(T0 + i, duration_ms=1000) for i in range(5)]
    _, alerts = replay([sub], [*earlier, run(T0 + MINUTE, duration_ms=2000)])
    assert alerts == []


def test_latency_spike_with_four_earlier_executions_is_not_evaluated() -> None:
    sub = watch("latency_spike")
    earlier = [run(T0 + i, duration_ms=1000) for i in range(4)]
    _, alerts = replay([sub], [*earlier, run(T0 + MINUTE, duration_ms=1_000_000)])
    assert alerts == []


def test_latency_spike_baseline_only_uses_the_window() -> None:
    sub = watch("latency_spike", windowHours=1)
    stale = [run(T0 - 2 * HOUR + i, duration_ms=10) for i in range(5)]
    recent = [run(T0 + i, duration_ms=1000) for i in range(4)]
    _, alerts = replay([sub], [*stale, *recent, run(T0 + MINUTE, duration_ms=5000)])
    assert alerts == []


def test_latency_spike_survives_durations_beyond_the_decimal_context() -> None:
    # Seven executions of 10**40 ms once raised decimal.InvalidOperation (quantize beyond 28
    # digits) and crashed the engine on every restart.
    sub = watch("latency_spike", latencySpikePercent=10)
    huge = [run(T0 + i, duration_ms=10**40) for i in range(6)]
    _, alerts = replay([sub], [*huge, run(T0 + MINUTE, duration_ms=10**41)])
    assert [(a.observed, a.threshold) for a in alerts] == [(Decimal(10**41), Decimal(11 * 10**39))]
    assert "10000000000000000000000000000000000000000.00 ms mean" in alerts[0].reason


@given(st.lists(st.integers(0, 10**60), min_size=6, max_size=12), st.integers(10, 1000))
def test_latency_spike_never_raises_on_any_durations(durations: list[int], percent: int) -> None:
    sub = watch("latency_spike", latencySpikePercent=percent)
    replay([sub], [run(T0 + i, duration_ms=d) for i, d in enumerate(durations)])


# cost_threshold


def test_cost_of_0_10_against_a_threshold_of_0_1_does_not_fire() -> None:
    config = msgspec.json.decode(
        b'{"rule":"cost_threshold","costThresholdDollars":0.1}', type=AlertConfig
    )
    sub = Subscription(id="ntf_a", config=config)
    event = execution(
        "e1", "w1", ended=datetime(2026, 1, 1, 10, 0, 1, tzinfo=UTC), duration_ms=1000,
        totalDurationMs=None, cost=msgspec.json.decode(b'{"total":0.10}', type=Cost),
    )  # fmt: skip
    _, alerts = replay([sub], [facts_of(event), run(T0 + 1, cost="0.10")])
    assert alerts == []
    _, above = replay([sub], [run(T0, cost="0.10000000000000001")])
    assert [(a.observed, a.threshold) for a in above] == [
        (Decimal("0.10000000000000001"), Decimal("0.1"))
    ]


def test_missing_cost_is_skipped() -> None:
    sub = watch("cost_threshold", costThresholdDollars="0.5", notifyOnResolve=True)
    _, alerts = replay([sub], [run(T0), run(T0 + 1, cost="0.6"), run(T0 + 2)])
    assert [a.kind for a in alerts] == ["fired"]  # the run without a cost does not resolve


# no_activity


def test_no_activity_fires_on_a_tick_after_the_deadline_and_resolves_on_the_next_execution() -> (
    None
):
    sub = watch("no_activity", inactivityHours=1, notifyOnResolve=True)
    state = arm(WorkflowState(workflow_id="w1"), "ntf_a", T0)
    inputs: list[Input] = [
        T0 + HOUR - 1,
        T0 + HOUR,
        T0 + HOUR + MINUTE,
        run(T0 + HOUR + 2 * MINUTE),
    ]
    _, alerts = replay([sub], inputs, state)
    assert kinds(alerts) == [("fired", T0 + HOUR), ("resolved", T0 + HOUR + 2 * MINUTE)]
    assert alerts[0].id == alerts[1].id  # one episode, one alert
    assert alerts[1].executionId == f"e{T0 + HOUR + 2 * MINUTE}"


def test_no_activity_does_not_fire_when_ticks_stop_before_the_deadline() -> None:
    sub = watch("no_activity", inactivityHours=1)
    state = arm(WorkflowState(workflow_id="w1"), "ntf_a", T0)
    # Whatever the wall clock says, only event time counts: ticks stopped 1 ms short.
    _, alerts = replay([sub], [T0 + m * MINUTE for m in range(60)] + [T0 + HOUR - 1], state)
    assert alerts == []


def test_no_activity_backlog_of_recent_executions_prevents_a_false_alert() -> None:
    sub = watch("no_activity", inactivityHours=1)
    state = arm(WorkflowState(workflow_id="w1"), "ntf_a", T0)
    backlog = [run(T0 + 50 * MINUTE + i * MINUTE) for i in range(10)]
    _, alerts = replay([sub], [*backlog, T0 + HOUR + 10 * MINUTE], state)
    assert alerts == []


def test_no_activity_is_armed_at_the_later_of_creation_and_last_execution() -> None:
    sub = watch("no_activity", inactivityHours=1)
    state, _ = replay([], [run(T0 - 5 * HOUR)])
    state = arm(state, "ntf_a", T0)
    _, alerts = replay([sub], [T0 + HOUR - 1, T0 + HOUR], state)
    assert kinds(alerts) == [("fired", T0 + HOUR)]
    state, _ = replay(
        [], [run(T0 + 30 * MINUTE)], arm(WorkflowState(workflow_id="w1"), "ntf_a", T0)
    )
    _, later = replay([sub], [T0 + HOUR, T0 + 90 * MINUTE], state)
    assert kinds(later) == [("fired", T0 + 90 * MINUTE)]


def test_no_activity_fires_once_per_inactivity_however_many_ticks() -> None:
    sub = watch("no_activity", inactivityHours=1)
    state = arm(WorkflowState(workflow_id="w1"), "ntf_a", T0)
    _, alerts = replay([sub], [T0 + HOUR + m * MINUTE for m in range(300)], state)
    assert len(alerts) == 1


def test_pending_alert_suppressed_by_cooldown_is_delivered_when_it_ends() -> None:
    sub = watch("no_activity", inactivityHours=1 / 60)
    state = arm(WorkflowState(workflow_id="w1"), "ntf_a", T0)
    inputs: list[Input] = [
        T0 + MINUTE,
        run(T0 + 2 * MINUTE),
        T0 + 4 * MINUTE,
        T0 + HOUR + MINUTE - 1,
        T0 + HOUR + MINUTE,
    ]
    _, alerts = replay([sub], inputs, state)
    assert kinds(alerts) == [("fired", T0 + MINUTE), ("fired", T0 + HOUR + MINUTE)]


# Cooldown


def test_cooldown_suppresses_at_59_59_and_allows_at_60_00() -> None:
    sub = watch("latency_threshold")
    slow = [run(T0 + offset, duration_ms=40_000) for offset in (0, HOUR - SECOND, HOUR)]
    _, alerts = replay([sub], slow)
    assert kinds(alerts) == [("fired", T0), ("fired", T0 + HOUR)]


def test_cooldown_is_configurable() -> None:
    sub = watch("latency_threshold")
    slow = [run(T0 + offset, duration_ms=40_000) for offset in (0, 59 * SECOND, MINUTE)]
    _, alerts = replay([sub], slow, cooldown_s=60)
    assert kinds(alerts) == [("fired", T0), ("fired", T0 + MINUTE)]


def test_two_rules_on_one_workflow_do_not_suppress_each_other() -> None:
    subs = [watch("latency_threshold", "ntf_slow"), watch("cost_threshold", "ntf_cost")]
    inputs = [run(T0, duration_ms=40_000), run(T0 + MINUTE, cost="5")]
    _, alerts = replay(subs, inputs)
    assert [(a.notificationId, a.atMs) for a in alerts] == [
        ("ntf_slow", T0),
        ("ntf_cost", T0 + MINUTE),
    ]


def test_one_rule_over_two_workflows_keeps_two_cooldowns() -> None:
    sub = watch("latency_threshold")
    _, a = replay([sub], [run(T0, duration_ms=40_000, workflow_id="w1")])
    _, b = replay(
        [sub],
        [run(T0 + MINUTE, duration_ms=40_000, workflow_id="w2")],
        WorkflowState(workflow_id="w2"),
    )
    assert [x.workflowId for x in a + b] == ["w1", "w2"]
    assert a[0].id != b[0].id


def test_cooldown_survives_a_restart() -> None:
    sub = watch("latency_threshold")
    state, fired = replay([sub], [run(T0, duration_ms=40_000)])
    state = restart(state)
    _, alerts = replay(
        [sub],
        [run(T0 + 30 * MINUTE, duration_ms=40_000), run(T0 + HOUR, duration_ms=40_000)],
        state,
    )
    assert kinds(fired + alerts) == [("fired", T0), ("fired", T0 + HOUR)]


def test_resolve_is_sent_only_when_asked_for_and_after_a_notification() -> None:
    quiet = watch("latency_threshold", "ntf_quiet")
    loud = watch("latency_threshold", "ntf_loud", notifyOnResolve=True)
    inputs = [run(T0, duration_ms=40_000), run(T0 + 1)]
    _, alerts = replay([quiet, loud], inputs)
    assert [(a.notificationId, a.kind) for a in alerts] == [
        ("ntf_quiet", "fired"),
        ("ntf_loud", "fired"),
        ("ntf_loud", "resolved"),
    ]
    _, suppressed = replay([loud], [*inputs, run(T0 + 2, duration_ms=40_000), run(T0 + 3)])
    assert [a.kind for a in suppressed] == [
        "fired",
        "resolved",
    ]  # the second episode never notified


# Subscriptions, ids and restarts


def test_arming_twice_keeps_the_cooldown_and_disarm_forgets_it() -> None:
    sub = watch("latency_threshold")
    state, _ = replay([sub], [run(T0, duration_ms=40_000)])
    state = arm(state, "ntf_a", T0 + MINUTE)
    _, again = replay([sub], [run(T0 + 2 * MINUTE, duration_ms=40_000)], state)
    assert again == []
    _, after = replay([sub], [run(T0 + 3 * MINUTE, duration_ms=40_000)], disarm(state, "ntf_a"))
    assert len(after) == 1


ALL_RULES = [
    watch("consecutive_failures", "ntf_1", notifyOnResolve=True),
    watch("failure_rate", "ntf_2", windowHours=1, notifyOnResolve=True),
    watch("latency_threshold", "ntf_3", notifyOnResolve=True),
    watch("latency_spike", "ntf_4", windowHours=1),
    watch("cost_threshold", "ntf_5"),
    watch("no_activity", "ntf_6", inactivityHours=1, notifyOnResolve=True),
    watch("error_count", "ntf_7", errorCountThreshold=3, notifyOnResolve=True),
]


def busy_day() -> list[Input]:
    inputs: list[Input] = []
    for i in range(200):
        at = T0 + i * 7 * MINUTE
        failed = i % 11 < 6
        inputs.append(
            run(at, f"x{i}", failed=failed, duration_ms=1000 + (i % 13) * 4000, cost=f"{i % 5}.5")
        )
        inputs.append(at + 3 * MINUTE)
        if i % 37 == 0:
            inputs.append(at + 3 * HOUR)
    return inputs


def test_busy_day_exercises_every_rule() -> None:
    _, alerts = replay(ALL_RULES, busy_day())
    assert {a.rule for a in alerts} == {s.config.rule for s in ALL_RULES}
    assert len({(a.id, a.kind, a.key) for a in alerts}) == len(alerts)
    assert all(a.id.startswith("alr_") for a in alerts)


def test_replay_into_fresh_state_reproduces_identical_alert_ids() -> None:
    _, first = replay(ALL_RULES, busy_day())
    _, second = replay(ALL_RULES, busy_day())
    assert first
    assert [a.id for a in first] == [a.id for a in second]
    assert first == second


def test_state_survives_an_encode_decode_round_trip() -> None:
    inputs = busy_day()
    _, uninterrupted = replay(ALL_RULES, inputs)
    state, before = replay(ALL_RULES, inputs[:150])
    for codec in (msgspec.json, msgspec.msgpack):
        decoded = codec.decode(codec.encode(state), type=WorkflowState)
        assert decoded == state
    resumed = msgspec.msgpack.decode(msgspec.msgpack.encode(state), type=WorkflowState)
    _, after = replay(ALL_RULES, inputs[150:], resumed)
    assert before + after == uninterrupted


def test_seen_ids_and_buckets_stay_bounded() -> None:
    inputs = [run(T0 + i * 30 * MINUTE, f"x{i}") for i in range(SEEN_LIMIT + 50)]
    state, _ = replay([], inputs)
    assert len(state.seen_digests) == SEEN_LIMIT * DIGEST_BYTES and state.seen == {}
    assert not has_seen(state, "x49")  # the oldest fifty are forgotten, in order
    assert all(has_seen(state, f"x{i}") for i in range(50, SEEN_LIMIT + 50))
    # the oldest bucket holds the hour the longest window's far edge falls in
    assert state.counts.minutes[-1] - state.counts.minutes[0] < HORIZON_MINUTES + HOUR_MINUTES
    # The value a busy workflow writes for every execution: its seen ids take 8 bytes each.
    busy = WorkflowState(workflow_id="w1", seen_digests=state.seen_digests)
    assert len(msgspec.json.encode(busy)) < 11_200


def _week_of_history(seed: int) -> list[ExecutionFacts]:
    """Eight days of executions at random minutes (a few a minute at times, none for hours at
    others), some failed, with a few arriving late (hours after they ended)."""
    rng = random.Random(seed)
    ended = [T0 + rng.randrange(8 * 24 * 60) * MINUTE + rng.randrange(MINUTE) for _ in range(6000)]
    history = [run(at, f"h{n}", failed=rng.random() < 0.2, duration_ms=rng.randrange(1, 5000))
               for n, at in enumerate(sorted(ended))]  # fmt: skip
    for _ in range(40):  # late: moved up to two days later in the log
        at = rng.randrange(len(history) - 1)
        history.insert(min(len(history), at + rng.randrange(1, 2000)), history.pop(at))
    return history


def _reference(
    kept: Sequence[ExecutionFacts], end_ms: int, far_minute: int
) -> tuple[int, int, int]:
    inside = [f for f in kept if far_minute <= f.ended_ms // MINUTE <= end_ms // MINUTE]
    return (len(inside), sum(f.failed for f in inside), sum(f.duration_ms for f in inside))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_windows_count_whole_minutes_for_a_day_and_whole_hours_beyond(seed: int) -> None:
    history = _week_of_history(seed)
    state, _ = replay([], history)
    now = state.now_ms
    assert now is not None and state.hourly_before is not None
    horizon = (now // MINUTE - HORIZON_MINUTES) // 60 * 60
    kept = [f for f in history if f.ended_ms // MINUTE >= horizon]
    for end in (now, now - 7 * MINUTE - 123, now - 3 * HOUR):  # a late execution's end, too
        for hours in (1 / 60, 0.5, 1, 6, 23.99, 24, 24.5, 25, 71.3, 100, 168):
            window = window_ms(watch("failure_rate", windowHours=hours).config)
            far = (end - window) // MINUTE  # the partial minute at the far edge counts whole
            if end == now and hours <= 24:  # a window up to a day from now: whole minutes
                assert far >= state.hourly_before
            if far < state.hourly_before:  # beyond: the hour the far edge falls in counts whole
                far = far // 60 * 60
            assert tuple(window_totals(state, end, window)) == _reference(kept, end, far), hours


def test_a_workflow_running_every_minute_for_a_week_keeps_hours_beyond_a_day() -> None:
    history = [run(T0 + n * MINUTE + 1500, f"m{n}") for n in range(8 * 24 * 60)]
    state, _ = replay([], history)
    assert state.hourly_before is not None
    buckets = list(zip(state.counts.minutes, state.counts.totals, strict=True))
    hourly = [(m, total) for m, total in buckets if m < state.hourly_before]
    minutes = [(m, total) for m, total in buckets if m >= state.hourly_before]
    assert all(m % 60 == 0 and total == 60 for m, total in hourly[1:])
    assert all(total == 1 for _, total in minutes)
    assert 144 <= len(hourly) <= 145 and FINE_MINUTES <= len(minutes) < FINE_MINUTES + 60
    # The value such a workflow writes for every execution (10,080 minute buckets made it 208 KB).
    assert len(msgspec.json.encode(state)) < 48_000


def test_a_state_with_minute_buckets_only_is_merged_by_the_hour_at_its_next_execution() -> None:
    history = [f for f in _week_of_history(4) if f.ended_ms < T0 + 6 * 24 * HOUR]  # none expire
    later = run(T0 + 6 * 24 * HOUR + 5 * MINUTE, "next", failed=True)
    current, _ = replay([], [*history, later])
    # The same history as the earlier format kept it: a row per minute (`buckets`), no
    # `hourly_before` and no `counts`.
    earlier, _ = replay([], history)
    fields = msgspec.to_builtins(earlier)
    del fields["hourly_before"], fields["counts"]
    minutes = sorted({f.ended_ms // MINUTE for f in history})
    fields["buckets"] = [[m, *_reference(history, m * MINUTE, m)] for m in minutes]
    restored = msgspec.json.decode(msgspec.json.encode(fields), type=WorkflowState)
    assert restored.hourly_before is None and restored.counts.minutes == []
    resumed, _ = replay([], [later], restored)
    assert resumed == current and resumed.buckets == []


def test_a_state_written_with_whole_ids_keeps_them_and_moves_them_to_digests() -> None:
    inputs = [run(T0 + i * MINUTE, f"x{i}") for i in range(SEEN_LIMIT)]
    current, _ = replay([], inputs)
    # The same state as the earlier format wrote it: no digests, the ids in `seen`, oldest first.
    fields = msgspec.to_builtins(current)
    del fields["seen_digests"]
    fields["seen"] = {f"x{i}": None for i in range(SEEN_LIMIT)}
    earlier = msgspec.json.decode(msgspec.json.encode(fields), type=WorkflowState)
    assert all(has_seen(earlier, f"x{i}") for i in range(SEEN_LIMIT))
    earlier, alerts = on_execution(earlier, [], run(T0, "x7"), 3600)
    assert alerts == [] and len(earlier.seen) == SEEN_LIMIT  # a duplicate changes nothing
    newest = run(T0 + SEEN_LIMIT * MINUTE, "new")
    moved, _ = on_execution(earlier, [], newest, 3600)
    assert moved.seen == {} and not has_seen(moved, "x0")  # the oldest gave way to the new one
    assert moved == replay([], [*inputs, newest])[0]  # as if it had never been written otherwise


# alertConfig decoding


def test_alert_config_defaults_follow_the_contract() -> None:
    config = msgspec.json.decode(b'{"rule":"consecutive_failures"}', type=AlertConfig)
    assert (config.consecutiveFailures, config.failureRatePercent, config.durationThresholdMs) == (
        3,
        50,
        30_000,
    )
    assert (config.latencySpikePercent, config.costThresholdDollars, config.inactivityHours) == (
        100,
        Decimal(1),
        24.0,
    )
    assert (config.errorCountThreshold, config.notifyOnResolve, config.windowHours) == (
        10,
        False,
        None,
    )


@pytest.mark.parametrize(
    "field",
    [
        '"rule":"sometimes"',
        '"consecutiveFailures":0', '"consecutiveFailures":101',
        '"failureRatePercent":0', '"failureRatePercent":101',
        '"windowHours":0.0166', '"windowHours":168.5',
        '"durationThresholdMs":999', '"durationThresholdMs":3600001',
        '"latencySpikePercent":9', '"latencySpikePercent":1001',
        '"costThresholdDollars":0.009', '"costThresholdDollars":1000.01', '"costThresholdDollars":"NaN"',
        '"inactivityHours":0.01', '"inactivityHours":169',
        '"errorCountThreshold":0', '"errorCountThreshold":1001',
        '"notifyOnResolve":"yes"', '"unknownField":1',
    ],
)  # fmt: skip
def test_alert_config_rejects_out_of_bounds_values(field: str) -> None:
    body = "{" + ('"rule":"error_count",' if '"rule"' not in field else "") + field + "}"
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(body.encode(), type=AlertConfig)


def test_alert_config_accepts_the_bounds_themselves() -> None:
    low = b'{"rule":"no_activity","windowHours":0.016666666666666666,"inactivityHours":168,"costThresholdDollars":0.01}'
    config = msgspec.json.decode(low, type=AlertConfig)
    assert config.costThresholdDollars == Decimal("0.01")
    assert window_ms(config) == MINUTE


# Properties


executions = st.lists(
    st.tuples(st.integers(0, 10 * HOUR), st.booleans()),
    min_size=1,
    max_size=60,
    unique_by=lambda t: t[0],
)


@given(executions, st.randoms(use_true_random=False), st.integers(0, 3))
def test_streak_counts_failures_after_the_latest_success_whatever_the_order(
    runs: list[tuple[int, bool]], rnd: random.Random, copies: int
) -> None:
    facts = [run(T0 + at, f"x{at}", failed=failed) for at, failed in runs]
    deliveries = facts + facts[: copies * len(facts) // 3]
    rnd.shuffle(deliveries)
    state, _ = replay([], deliveries)
    last_success = max((at for at, failed in runs if not failed), default=-1)
    expected = sum(1 for at, failed in runs if failed and at > last_success)
    assert streak(state) == min(expected, STREAK_LIMIT)


@given(
    st.lists(
        st.one_of(st.tuples(st.integers(0, 4 * HOUR), st.booleans()), st.integers(0, 5 * HOUR)),
        max_size=80,
    ),
    st.integers(1, 20),
)
def test_error_count_never_fires_when_total_errors_are_within_the_threshold(
    steps: list[tuple[int, bool] | int], threshold: int
) -> None:
    sub = watch("error_count", errorCountThreshold=threshold)
    inputs = [
        T0 + s if isinstance(s, int) else run(T0 + s[0], f"x{s[0]}", failed=s[1]) for s in steps
    ]
    errors = {s[0] for s in steps if not isinstance(s, int) and s[1]}
    _, alerts = replay([sub], inputs)
    if len(errors) <= threshold:
        assert alerts == []


@settings(max_examples=50)
@given(
    st.lists(
        st.tuples(st.integers(0, 6 * HOUR), st.booleans(), st.integers(0, 60_000)), max_size=60
    ),
    st.sampled_from(ALL_RULES),
)
def test_notifications_of_a_subscription_are_a_cooldown_apart_and_replay_identically(
    steps: list[tuple[int, bool, int]], sub: Subscription
) -> None:
    inputs: list[Input] = []
    for at, failed, duration in sorted(steps):
        inputs += [
            run(T0 + at, f"x{at}", failed=failed, duration_ms=duration, cost="1.5"),
            T0 + at + MINUTE,
        ]
    _, alerts = replay([sub], inputs)
    fired = [a.atMs for a in alerts if a.kind == "fired"]
    assert all(later - earlier >= HOUR for earlier, later in itertools.pairwise(fired))
    assert replay([sub], inputs)[1] == alerts


@given(st.lists(st.booleans(), min_size=1, max_size=40), st.integers(1, 100))
def test_failure_rate_fires_exactly_when_errors_exceed_the_percentage(
    flags: list[bool], percent: int
) -> None:
    sub = watch("failure_rate", windowHours=1, failureRatePercent=percent)
    history = [run(T0 - 2 * HOUR), *(run(T0 + i, failed=f) for i, f in enumerate(flags))]
    state, _ = replay([], history)
    _, alerts = replay([sub], [T0 + MINUTE], state)
    expected = len(flags) >= 5 and sum(flags) * 100 > percent * len(flags)
    assert bool(alerts) == expected


def test_seen_digests_match_only_at_a_digest_boundary() -> None:
    a, b = seen_digest("ex-a"), seen_digest("ex-b")
    seen = digests_add(digests_add(b"", a), b)
    assert digests_have(seen, a) and digests_have(seen, b)
    straddling = a[4:] + b[:4]  # present in the bytes, but across two digests
    assert straddling in seen and not digests_have(seen, straddling)
    assert not digests_have(seen, seen_digest("ex-c"))


@given(st.lists(st.text(max_size=40), min_size=1, max_size=1500))
@settings(max_examples=30, deadline=None)
def test_seen_digests_keep_the_latest_thousand(ids: list[str]) -> None:
    seen = b""
    for execution_id in ids:
        seen = digests_add(seen, seen_digest(execution_id))
    assert len(seen) == min(len(ids), 1000) * 8
    assert all(digests_have(seen, seen_digest(i)) for i in ids[-1000:])
