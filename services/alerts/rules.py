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

Silences. `muted(subscription_id, rule, at_ms)` says whether an active silence takes a
notification at event time `at_ms`. A muted notification is returned with `silenced=True` (the
engine records it and does not send it) and touches neither the cooldown nor `notified`, which
are about delivered notifications; while the condition holds, at most one muted notification
per cooldown is recorded. On a tick, an episode whose latest notification was muted and that no
silence takes any more gets exactly one notification at once, cooldown permitting (the cooldown
counts from the last delivered one): the silence ended, or its window closed, while the
condition still held. Only what the records and event time say decides, so a replay mutes
the same notifications.
"""

import base64
import hashlib
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Literal, NamedTuple

import msgspec

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

Muted = Callable[[str, str, int], bool]
"""(subscription id, rule, event time in ms) -> whether an active silence takes it."""


def never_muted(_subscription_id: str, _rule: str, _at_ms: int) -> bool:
    """No silences."""
    return False


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
    muted: Muted = never_muted,
) -> tuple[WorkflowState, list[Alert]]:
    """Count a completed execution once and evaluate every subscription on it."""
    if not record(state, facts):
        return state, []
    now = advance(state, facts.ended_ms)
    alerts: list[Alert] = []
    for sub in subscriptions:
        repeat = sub.config.rule not in TICK_ONLY
        trigger = Trigger(facts.execution_id, now, facts.execution_id, repeat)
        alerts += _evaluate(state, sub, facts, trigger, cooldown_s * 1000, muted)
    return state, alerts


def on_tick(
    state: WorkflowState,
    subscriptions: Sequence[Subscription],
    now_ms: int,
    cooldown_s: int = DEFAULT_COOLDOWN_S,
    muted: Muted = never_muted,
) -> tuple[WorkflowState, list[Alert]]:
    """Let event time pass (never the wall clock), evaluate the time-driven conditions and
    follow up episodes whose silence is over."""
    now = advance(state, now_ms)
    trigger = Trigger(f"tick:{now}", now, None, repeat=False)
    alerts: list[Alert] = []
    for sub in subscriptions:
        alerts += _evaluate(state, sub, None, trigger, cooldown_s * 1000, muted)
        alerts += _release(state, sub, trigger, cooldown_s * 1000, muted)
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
    muted: Muted = never_muted,
) -> list[Alert]:
    # Not armed yet here (a workflow first seen after the subscription, or an input read before
    # the subscription's own record): armed since the subscription's creation, as `arm` does.
    watch = state.watches.setdefault(sub.id, Watch(armed_ms=sub.armed_ms or trigger.at_ms))
    check = CHECKS[sub.config.rule](state, watch, sub.config, facts, trigger.at_ms)
    if check is None:
        return []
    silenced = muted(sub.id, sub.config.rule, trigger.at_ms)
    if not check.holds:
        return _close(state.workflow_id, sub, watch, check, trigger, silenced)
    return _fire(state.workflow_id, sub, watch, check, trigger, cooldown_ms, silenced)


def _fire(
    workflow_id: str,
    sub: Subscription,
    watch: Watch,
    check: Check,
    trigger: Trigger,
    cooldown_ms: int,
    silenced: bool = False,
) -> list[Alert]:
    key = check.key or trigger.key
    episode = watch.episode = watch.episode or Episode(key)
    if episode.notified and not trigger.repeat:
        return []
    if watch.last_fired_ms is not None and trigger.at_ms - watch.last_fired_ms < cooldown_ms:
        return []
    if silenced:
        return _mute(workflow_id, sub, episode, check, trigger, key, cooldown_ms)
    episode.notified = True
    episode.silenced_ms = None
    watch.last_fired_ms = trigger.at_ms
    return [_alert(workflow_id, sub, "fired", key, check, trigger)]


def _mute(
    workflow_id: str,
    sub: Subscription,
    episode: Episode,
    check: Check,
    trigger: Trigger,
    key: str,
    cooldown_ms: int,
) -> list[Alert]:
    """A notification a silence takes: recorded once per cooldown, with its figures kept."""
    if episode.silenced_ms is not None and trigger.at_ms - episode.silenced_ms < cooldown_ms:
        return []
    episode.silenced_ms = trigger.at_ms
    episode.reason, episode.observed, episode.threshold = (
        check.summary,
        check.observed,
        check.threshold,
    )
    alert = _alert(workflow_id, sub, "fired", key, check, trigger)
    return [msgspec.structs.replace(alert, silenced=True)]


def _release(
    state: WorkflowState, sub: Subscription, trigger: Trigger, cooldown_ms: int, muted: Muted
) -> list[Alert]:
    """One notification for an open episode whose latest one was muted, once no silence takes
    it any more and the cooldown allows."""
    watch = state.watches.get(sub.id)
    episode = watch.episode if watch is not None else None
    if watch is None or episode is None or not episode.silenced:
        return []
    if muted(sub.id, sub.config.rule, trigger.at_ms):
        return []
    if watch.last_fired_ms is not None and trigger.at_ms - watch.last_fired_ms < cooldown_ms:
        return []
    key = trigger.key if episode.notified else episode.key
    check = Check(True, episode.observed or Decimal(0), episode.threshold or Decimal(0),
                  episode.reason or "")  # fmt: skip
    episode.notified, episode.silenced_ms = True, None
    watch.last_fired_ms = trigger.at_ms
    return [_alert(state.workflow_id, sub, "fired", key, check, trigger)]


def _close(
    workflow_id: str,
    sub: Subscription,
    watch: Watch,
    check: Check,
    trigger: Trigger,
    silenced: bool = False,
) -> list[Alert]:
    episode, watch.episode = watch.episode, None
    if episode is None or not episode.notified or not sub.config.notifyOnResolve:
        return []
    alert = _alert(workflow_id, sub, "resolved", episode.key, check, trigger)
    return [msgspec.structs.replace(alert, silenced=True) if silenced else alert]


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
