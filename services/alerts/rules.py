"""The seven alert rules (contract section 6) as pure functions of state, input and event time.

Three inputs drive them: a completed execution (`on_execution`), a tick carrying only event time
(`on_tick`) and a subscription change (`arm`, `disarm`). Each updates the `WorkflowState` it is
given in place, returns it for the caller to write back, and returns the alerts to emit. Nothing
here reads a clock or does I/O, so a replay of the same inputs yields the same alerts and ids.
Each rule's condition is checked in `services.alerts.checks`.

An episode is a stretch during which a rule's condition holds. Its first notification is subject
to the cooldown per (subscription, workflow); later executions that keep the condition true may
notify again once the cooldown has passed, ticks only deliver an episode's pending first
notification. When the condition stops holding after a notification, a "resolved" alert follows
if the subscription asked for it.
"""

import base64
import hashlib
from collections.abc import Sequence
from decimal import Decimal
from typing import Literal, NamedTuple

from schemas.alerts import Alert, Rule
from schemas.events import ExecutionCompleted
from services.alerts.checks import CHECKS, Check
from services.alerts.state import (
    Episode,
    ExecutionFacts,
    Subscription,
    Watch,
    WorkflowState,
    advance,
    record,
)
from services.common.clock import to_ms

DEFAULT_COOLDOWN_S = 3600
TICK_ONLY: frozenset[Rule] = frozenset({"no_activity"})


class Trigger(NamedTuple):
    """The input being evaluated: its id for alert ids, its event time, and its kind."""

    key: str
    at_ms: int
    execution_id: str | None
    repeat: bool


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
