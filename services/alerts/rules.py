"""The seven alert rules (contract section 6) as pure functions of state, input and event time.

Three inputs drive them: a completed execution (`on_execution`), a tick carrying only event time
(`on_tick`) and a subscription change (`arm`, `disarm`). Each updates the `WorkflowState` it is
given in place, returns it for the caller to write back, and returns the alerts to emit. Nothing
here reads a clock or does I/O, so a replay of the same inputs yields the same alerts and ids.

An episode is a stretch during which a rule's condition holds. Its first notification is subject
to the cooldown per (subscription, workflow); later executions that keep the condition true may
notify again once the cooldown has passed, ticks only deliver an episode's pending first
notification. When the condition stops holding after a notification, a "resolved" alert follows
if the subscription asked for it.
"""

import base64
import hashlib
from collections.abc import Callable, Sequence
from decimal import MAX_PREC, Context, Decimal
from typing import Literal, NamedTuple

from schemas.alerts import (
    DEFAULT_WINDOW_HOURS,
    ERROR_COUNT_WINDOW_HOURS,
    Alert,
    AlertConfig,
    Rule,
)
from schemas.events import ExecutionCompleted
from services.alerts.state import (
    HOUR_MS,
    MINUTE_MS,
    Episode,
    ExecutionFacts,
    Subscription,
    Watch,
    WorkflowState,
    advance,
    record,
    streak,
    window_totals,
)
from services.common.clock import iso_ms, to_ms

DEFAULT_COOLDOWN_S = 3600
MIN_RATE_SAMPLE = 5
MIN_SPIKE_BASELINE = 5
TICK_ONLY: frozenset[Rule] = frozenset({"no_activity"})
_EXACT = Context(prec=MAX_PREC)  # scaleb only moves the exponent: no digit is ever dropped


class Check(NamedTuple):
    """One evaluation of a rule: whether it holds, its figures, and a sentence about them."""

    holds: bool
    observed: Decimal
    threshold: Decimal
    summary: str
    key: str | None = None


class Trigger(NamedTuple):
    """The input being evaluated: its id for alert ids, its event time, and its kind."""

    key: str
    at_ms: int
    execution_id: str | None
    repeat: bool


CheckFn = Callable[[WorkflowState, Watch, AlertConfig, ExecutionFacts | None, int], Check | None]


def facts_of(event: ExecutionCompleted) -> ExecutionFacts:
    """The rule-relevant facts of a completed execution; cost kept as its exact decimal text."""
    ended_ms = to_ms(event.endedAt)
    duration = event.totalDurationMs
    if duration is None:
        duration = max(0, ended_ms - to_ms(event.startedAt))
    return ExecutionFacts(
        execution_id=event.executionId,
        workflow_id=event.workflowId,
        ended_ms=ended_ms,
        failed=event.level == "error" or event.status == "error",
        duration_ms=duration,
        cost=None if event.cost is None else Decimal(repr(event.cost.total)),
    )


def arm(state: WorkflowState, subscription_id: str, at_ms: int) -> WorkflowState:
    """Start watching the workflow for a subscription; a repeated arm keeps the existing state."""
    state.watches.setdefault(subscription_id, Watch(armed_ms=at_ms))
    return state


def disarm(state: WorkflowState, subscription_id: str) -> WorkflowState:
    """Forget a subscription's cooldown and episode (deleted, paused or no longer matching)."""
    state.watches.pop(subscription_id, None)
    return state


def on_execution(
    state: WorkflowState,
    subscriptions: Sequence[Subscription],
    facts: ExecutionFacts,
    cooldown_s: int = DEFAULT_COOLDOWN_S,
) -> tuple[WorkflowState, list[Alert]]:
    """Count a completed execution once and evaluate every subscription on it."""
    if not record(state, facts):
        return state, []
    now = advance(state, facts.ended_ms)
    alerts: list[Alert] = []
    for sub in subscriptions:
        repeat = sub.config.rule not in TICK_ONLY
        trigger = Trigger(facts.execution_id, now, facts.execution_id, repeat)
        alerts += _evaluate(state, sub, facts, trigger, cooldown_s * 1000)
    return state, alerts


def on_tick(
    state: WorkflowState,
    subscriptions: Sequence[Subscription],
    now_ms: int,
    cooldown_s: int = DEFAULT_COOLDOWN_S,
) -> tuple[WorkflowState, list[Alert]]:
    """Let event time pass (never the wall clock) and evaluate the time-driven conditions."""
    now = advance(state, now_ms)
    trigger = Trigger(f"tick:{now}", now, None, repeat=False)
    alerts = [
        a for sub in subscriptions for a in _evaluate(state, sub, None, trigger, cooldown_s * 1000)
    ]
    return state, alerts


def alert_id(subscription_id: str, workflow_id: str, rule: str, kind: str, key: str) -> str:
    """A deterministic `alr_` id: the same trigger always yields the same id."""
    material = "\0".join((subscription_id, workflow_id, rule, kind, key)).encode()
    digest = hashlib.blake2b(material, digest_size=15).digest()
    return "alr_" + base64.b32encode(digest).decode().lower()


def window_ms(config: AlertConfig) -> int:
    """The rule's window in ms: `windowHours`, else 24 h (one hour for error_count)."""
    default = ERROR_COUNT_WINDOW_HOURS if config.rule == "error_count" else DEFAULT_WINDOW_HOURS
    return _hours_ms(config.windowHours or default)


def _hours_ms(hours: float) -> int:
    return round(hours * HOUR_MS)


def _evaluate(
    state: WorkflowState,
    sub: Subscription,
    facts: ExecutionFacts | None,
    trigger: Trigger,
    cooldown_ms: int,
) -> list[Alert]:
    # Not armed yet here (a workflow first seen after the subscription, or an input read before
    # the subscription's own record): armed since the subscription's creation, as `arm` does.
    watch = state.watches.setdefault(sub.id, Watch(armed_ms=sub.armed_ms or trigger.at_ms))
    check = CHECKS[sub.config.rule](state, watch, sub.config, facts, trigger.at_ms)
    if check is None:
        return []
    if not check.holds:
        return _close(state.workflow_id, sub, watch, check, trigger)
    return _fire(state.workflow_id, sub, watch, check, trigger, cooldown_ms)


def _fire(
    workflow_id: str,
    sub: Subscription,
    watch: Watch,
    check: Check,
    trigger: Trigger,
    cooldown_ms: int,
) -> list[Alert]:
    key = check.key or trigger.key
    episode = watch.episode = watch.episode or Episode(key)
    if episode.notified and not trigger.repeat:
        return []
    if watch.last_fired_ms is not None and trigger.at_ms - watch.last_fired_ms < cooldown_ms:
        return []
    episode.notified = True
    watch.last_fired_ms = trigger.at_ms
    return [_alert(workflow_id, sub, "fired", key, check, trigger)]


def _close(
    workflow_id: str, sub: Subscription, watch: Watch, check: Check, trigger: Trigger
) -> list[Alert]:
    episode, watch.episode = watch.episode, None
    if episode is None or not episode.notified or not sub.config.notifyOnResolve:
        return []
    return [_alert(workflow_id, sub, "resolved", episode.key, check, trigger)]


def _alert(
    workflow_id: str,
    sub: Subscription,
    kind: Literal["fired", "resolved"],
    key: str,
    check: Check,
    trigger: Trigger,
) -> Alert:
    rule = sub.config.rule
    return Alert(
        id=alert_id(sub.id, workflow_id, rule, kind, key),
        kind=kind,
        rule=rule,
        reason=check.summary if kind == "fired" else f"Resolved: {check.summary}",
        observed=check.observed,
        threshold=check.threshold,
        notificationId=sub.id,
        workflowId=workflow_id,
        atMs=trigger.at_ms,
        executionId=trigger.execution_id,
    )


def _consecutive_failures(
    state: WorkflowState,
    watch: Watch,
    config: AlertConfig,
    facts: ExecutionFacts | None,
    now_ms: int,
) -> Check | None:
    if facts is None:
        return None
    count, limit = streak(state), config.consecutiveFailures
    summary = f"{count} consecutive failures since the last success (threshold: {limit})."
    return Check(count >= limit, Decimal(count), Decimal(limit), summary)


def _failure_rate(
    state: WorkflowState,
    watch: Watch,
    config: AlertConfig,
    facts: ExecutionFacts | None,
    now_ms: int,
) -> Check | None:
    window = window_ms(config)
    totals = window_totals(state, now_ms, window)
    full = state.first_ms is not None and now_ms - state.first_ms >= window
    percent = config.failureRatePercent
    enough = full and totals.total >= MIN_RATE_SAMPLE
    holds = enough and totals.errors * 100 > percent * totals.total
    observed = _percent(totals.errors, totals.total)
    summary = (
        f"{totals.errors} of {totals.total} executions failed ({observed}%) in the last "
        f"{_span(window)} (threshold: {percent}%)."
    )
    return Check(holds, observed, Decimal(percent), summary)


def _latency_threshold(
    state: WorkflowState,
    watch: Watch,
    config: AlertConfig,
    facts: ExecutionFacts | None,
    now_ms: int,
) -> Check | None:
    if facts is None:
        return None
    limit = config.durationThresholdMs
    summary = f"Execution {facts.execution_id} took {facts.duration_ms} ms (threshold: {limit} ms)."
    return Check(facts.duration_ms > limit, Decimal(facts.duration_ms), Decimal(limit), summary)


def _latency_spike(
    state: WorkflowState,
    watch: Watch,
    config: AlertConfig,
    facts: ExecutionFacts | None,
    now_ms: int,
) -> Check | None:
    if facts is None:
        return None
    totals = window_totals(state, facts.ended_ms, window_ms(config))
    earlier, earlier_ms = totals.total - 1, totals.duration_ms - facts.duration_ms
    if earlier < MIN_SPIKE_BASELINE:
        return None
    percent = config.latencySpikePercent
    holds = facts.duration_ms * earlier * 100 > earlier_ms * (100 + percent)
    mean = _cents(earlier_ms, earlier)
    limit = _cents(earlier_ms * (100 + percent), earlier * 100)
    summary = (
        f"Execution {facts.execution_id} took {facts.duration_ms} ms against a {mean} ms mean of "
        f"{earlier} earlier executions (threshold: {percent}% above it, {limit} ms)."
    )
    return Check(holds, Decimal(facts.duration_ms), limit, summary)


def _cost_threshold(
    state: WorkflowState,
    watch: Watch,
    config: AlertConfig,
    facts: ExecutionFacts | None,
    now_ms: int,
) -> Check | None:
    if facts is None or facts.cost is None:
        return None
    limit = config.costThresholdDollars
    summary = f"Execution {facts.execution_id} cost ${facts.cost} (threshold: ${limit})."
    return Check(facts.cost > limit, facts.cost, limit, summary)


def _no_activity(
    state: WorkflowState,
    watch: Watch,
    config: AlertConfig,
    facts: ExecutionFacts | None,
    now_ms: int,
) -> Check | None:
    since = watch.armed_ms if state.last_ms is None else max(watch.armed_ms, state.last_ms)
    deadline = since + _hours_ms(config.inactivityHours)
    idle_hours = _cents(now_ms - since, HOUR_MS)
    limit = Decimal(repr(config.inactivityHours))
    summary = f"No execution since {iso_ms(since)}, {idle_hours} h ago (threshold: {limit} h)."
    return Check(now_ms >= deadline, idle_hours, limit, summary, key=f"deadline:{deadline}")


def _error_count(
    state: WorkflowState,
    watch: Watch,
    config: AlertConfig,
    facts: ExecutionFacts | None,
    now_ms: int,
) -> Check | None:
    window = window_ms(config)
    errors, limit = window_totals(state, now_ms, window).errors, config.errorCountThreshold
    summary = f"{errors} errors in the last {_span(window)} (threshold: {limit})."
    return Check(errors > limit, Decimal(errors), Decimal(limit), summary)


def _percent(part: int, whole: int) -> Decimal:
    return _cents(part * 100, whole) if whole else Decimal(0)


def _cents(numerator: int, denominator: int) -> Decimal:
    """numerator / denominator (> 0) rounded half-even to cents, exact for any size of integer.

    Decimal division and `quantize` work within the context's 28 digits and raise
    `InvalidOperation` beyond them: a duration of 10**40 ms is a valid integer on the topic.
    """
    quotient, remainder = divmod(numerator * 100, denominator)
    if 2 * remainder > denominator or (2 * remainder == denominator and quotient % 2):
        quotient += 1
    return Decimal(quotient).scaleb(-2, _EXACT)


def _span(ms: int) -> str:
    return f"{ms // HOUR_MS} h" if ms % HOUR_MS == 0 else f"{ms / MINUTE_MS:g} min"


CHECKS: dict[Rule, CheckFn] = {
    "consecutive_failures": _consecutive_failures,
    "failure_rate": _failure_rate,
    "latency_threshold": _latency_threshold,
    "latency_spike": _latency_spike,
    "cost_threshold": _cost_threshold,
    "no_activity": _no_activity,
    "error_count": _error_count,
}
