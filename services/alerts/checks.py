"""The condition of each of the seven alert rules, checked against a workflow's state.

A check reads the `WorkflowState` at event time `now_ms` (and the execution being evaluated,
None on a tick) and says whether the rule's condition holds, with its figures and a sentence;
None means the input does not concern the rule. `CHECKS` maps a rule to its check.
"""

from collections.abc import Callable
from decimal import MAX_PREC, Context, Decimal
from typing import NamedTuple

from schemas.alerts import DEFAULT_WINDOW_HOURS, ERROR_COUNT_WINDOW_HOURS, AlertConfig, Rule
from services.alerts.state import (
    HOUR_MS,
    MINUTE_MS,
    ExecutionFacts,
    Watch,
    WorkflowState,
    streak,
    window_totals,
)
from services.common.clock import iso_ms

MIN_RATE_SAMPLE = 5
MIN_SPIKE_BASELINE = 5
_EXACT = Context(prec=MAX_PREC)  # scaleb only moves the exponent: no digit is ever dropped


class Check(NamedTuple):
    """One evaluation of a rule: whether it holds, its figures, and a sentence about them."""

    holds: bool
    observed: Decimal
    threshold: Decimal
    summary: str
    key: str | None = None


CheckFn = Callable[[WorkflowState, Watch, AlertConfig, ExecutionFacts | None, int], Check | None]


def window_ms(config: AlertConfig) -> int:
    """The rule's window in ms: `windowHours`, else 24 h (one hour for error_count)."""
    default = ERROR_COUNT_WINDOW_HOURS if config.rule == "error_count" else DEFAULT_WINDOW_HOURS
    return _hours_ms(config.windowHours or default)


def _hours_ms(hours: float) -> int:
    return round(hours * HOUR_MS)


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
