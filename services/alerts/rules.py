"""The seven alert rules (contract section 6) as pure functions of state, input and event time.

Three inputs drive them: a completed execution (`on_execution`), a tick carrying only event time
(`on_tick`) and a subscription change (`arm`, `disarm`, `withdraw`). Each updates the
`WorkflowState` it is given in place, returns it for the caller to write back, and returns the
alerts to emit. Nothing here reads a clock or does I/O, so a replay of the same inputs yields the
same alerts and ids. Each rule's condition is checked in `services.alerts.checks`.

An episode is a stretch during which a rule's condition holds. Its first notification is subject
to the cooldown per (subscription, workflow); later executions that keep the condition true may
notify again once the cooldown has passed, ticks only deliver an episode's pending first
notification. When the condition stops holding after a notification, a "resolved" alert follows
if the subscription asked for it.

Alerts. An episode is one alert: its `alr_` id is a digest of the subscription, workflow, rule
and the episode's first trigger (`alert_id`), so its first notification, its repeats and its
resolve share it, and a replay gives the same. Every event of an episode is returned, also those
that notify no one (a muted one, or a resolve the subscription did not ask for: `notify=False`),
with the episode's figures, so that the alerts table can follow it. Acknowledgements.
`acked(alert_id, at_ms)` says whether the episode was acknowledged at or before event time
`at_ms`: an acknowledged episode gets no further fired notification (repeat or release), but its
resolve; a new episode has a new id, so it is not acknowledged.

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


Acked = Callable[[str, int], bool]
"""(alert id, event time in ms) -> whether the alert was acknowledged at or before that time."""


def never_muted(_subscription_id: str, _rule: str, _at_ms: int) -> bool:
    """No silences."""
    return False


def never_acked(_alert_id: str, _at_ms: int) -> bool:
    """No acknowledgements."""
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


def withdraw(state: WorkflowState, sub: Subscription, at_ms: int, why: str) -> list[Alert]:
    """Stop watching the workflow for `sub` (deleted, paused, changed or no longer covering it):
    like `disarm`, and an episode still open ends with a resolve that is only recorded (nobody
    is notified; `why` says what ended it), so that its alert does not stay firing."""
    watch = state.watches.pop(sub.id, None)
    if watch is None or watch.episode is None:
        return []
    episode = watch.episode
    check = Check(False, episode.observed or Decimal(0), episode.threshold or Decimal(0), why)
    trigger = Trigger(episode.key, at_ms, None, False)
    return _close(state.workflow_id, sub, watch, check, trigger, announce=False)


def on_execution(
    state: WorkflowState,
    subscriptions: Sequence[Subscription],
    facts: ExecutionFacts,
    cooldown_s: int = DEFAULT_COOLDOWN_S,
    muted: Muted = never_muted,
    acked: Acked = never_acked,
) -> tuple[WorkflowState, list[Alert]]:
    """Count a completed execution once and evaluate every subscription on it."""
    if not record(state, facts):
        return state, []
    now = advance(state, facts.ended_ms)
    alerts: list[Alert] = []
    for sub in subscriptions:
        repeat = sub.config.rule not in TICK_ONLY
        trigger = Trigger(facts.execution_id, now, facts.execution_id, repeat)
        alerts += _evaluate(state, sub, facts, trigger, cooldown_s * 1000, muted, acked)
    return state, alerts


def on_tick(
    state: WorkflowState,
    subscriptions: Sequence[Subscription],
    now_ms: int,
    cooldown_s: int = DEFAULT_COOLDOWN_S,
    muted: Muted = never_muted,
    acked: Acked = never_acked,
) -> tuple[WorkflowState, list[Alert]]:
    """Let event time pass (never the wall clock), evaluate the time-driven conditions and
    follow up episodes whose silence is over."""
    now = advance(state, now_ms)
    trigger = Trigger(f"tick:{now}", now, None, repeat=False)
    alerts: list[Alert] = []
    for sub in subscriptions:
        alerts += _evaluate(state, sub, None, trigger, cooldown_s * 1000, muted, acked)
        alerts += _release(state, sub, trigger, cooldown_s * 1000, muted, acked)
    return state, alerts


def alert_id(subscription_id: str, workflow_id: str, rule: str, key: str) -> str:
    """The deterministic `alr_` id of the episode whose first trigger is `key`: every event of
    the episode (first notification, repeats, resolve) carries it, and a replay gives the same.
    (The digest is that of the episode's first "fired" notification in earlier versions.)"""
    material = "\0".join((subscription_id, workflow_id, rule, "fired", key)).encode()
    digest = hashlib.blake2b(material, digest_size=15).digest()
    return "alr_" + base64.b32encode(digest).decode().lower()


def _evaluate(
    state: WorkflowState,
    sub: Subscription,
    facts: ExecutionFacts | None,
    trigger: Trigger,
    cooldown_ms: int,
    muted: Muted = never_muted,
    acked: Acked = never_acked,
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
    return _fire(state.workflow_id, sub, watch, check, trigger, cooldown_ms, silenced, acked)


def _fire(
    workflow_id: str,
    sub: Subscription,
    watch: Watch,
    check: Check,
    trigger: Trigger,
    cooldown_ms: int,
    silenced: bool = False,
    acked: Acked = never_acked,
) -> list[Alert]:
    key = check.key or trigger.key
    if watch.episode is None:
        episode_id = alert_id(sub.id, workflow_id, sub.config.rule, key)
        watch.episode = Episode(key, id=episode_id, execution_id=trigger.execution_id)
    episode = watch.episode
    if episode.notified and not trigger.repeat:
        return []
    if watch.last_fired_ms is not None and trigger.at_ms - watch.last_fired_ms < cooldown_ms:
        return []
    if acked(_episode_id(workflow_id, sub, episode), trigger.at_ms):
        return []  # acknowledged: no more notifications until it resolves
    if silenced:
        return _mute(workflow_id, sub, episode, check, trigger, key, cooldown_ms)
    episode.notified = True
    episode.silenced_ms = None
    watch.last_fired_ms = trigger.at_ms
    return [_event(workflow_id, sub, episode, "fired", key, check, trigger)]


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
    return [_event(workflow_id, sub, episode, "fired", key, check, trigger, silenced=True)]


def _release(
    state: WorkflowState,
    sub: Subscription,
    trigger: Trigger,
    cooldown_ms: int,
    muted: Muted,
    acked: Acked = never_acked,
) -> list[Alert]:
    """One notification for an open episode whose latest one was muted, once no silence takes
    it any more and the cooldown allows (none for an acknowledged one)."""
    watch = state.watches.get(sub.id)
    episode = watch.episode if watch is not None else None
    if watch is None or episode is None or not episode.silenced:
        return []
    if muted(sub.id, sub.config.rule, trigger.at_ms):
        return []
    if watch.last_fired_ms is not None and trigger.at_ms - watch.last_fired_ms < cooldown_ms:
        return []
    if acked(_episode_id(state.workflow_id, sub, episode), trigger.at_ms):
        return []
    key = trigger.key if episode.notified else episode.key
    check = Check(True, episode.observed or Decimal(0), episode.threshold or Decimal(0),
                  episode.reason or "")  # fmt: skip
    episode.notified, episode.silenced_ms = True, None
    watch.last_fired_ms = trigger.at_ms
    return [_event(state.workflow_id, sub, episode, "fired", key, check, trigger)]


def _close(
    workflow_id: str,
    sub: Subscription,
    watch: Watch,
    check: Check,
    trigger: Trigger,
    silenced: bool = False,
    *,
    announce: bool = True,
) -> list[Alert]:
    """The end of an episode: a resolve notification when one was delivered, the subscription
    asked for it and `announce`, else a resolve that is only recorded (the alert's new state)."""
    episode, watch.episode = watch.episode, None
    if episode is None or not (episode.seq or episode.notified or episode.silenced):
        return []  # nothing was ever recorded of it: not an alert
    notify = announce and episode.notified and sub.config.notifyOnResolve
    muted = silenced if notify else episode.silenced
    return [_event(workflow_id, sub, episode, "resolved", episode.key, check, trigger,
                   silenced=muted, notify=notify)]  # fmt: skip


def _episode_id(workflow_id: str, sub: Subscription, episode: Episode) -> str:
    """The episode's alert id (computed for an episode stored before it had one)."""
    if not episode.id:
        episode.id = alert_id(sub.id, workflow_id, sub.config.rule, episode.key)
    return episode.id


def _event(
    workflow_id: str,
    sub: Subscription,
    episode: Episode,
    kind: Literal["fired", "resolved"],
    key: str,
    check: Check,
    trigger: Trigger,
    *,
    silenced: bool = False,
    notify: bool = True,
) -> Alert:
    """One event of the episode, counted into it: its figures are the episode's after it."""
    episode_id = _episode_id(workflow_id, sub, episode)
    if episode.fired_ms is None:
        episode.fired_ms = trigger.at_ms
    episode.seq += 1
    if notify and not silenced:
        episode.count += 1
        episode.notified_ms = trigger.at_ms
    rule = sub.config.rule
    return Alert(
        id=episode_id,
        kind=kind,
        rule=rule,
        reason=check.summary if kind == "fired" else f"Resolved: {check.summary}",
        observed=check.observed,
        threshold=check.threshold,
        notificationId=sub.id,
        workflowId=workflow_id,
        atMs=trigger.at_ms,
        executionId=trigger.execution_id,
        silenced=silenced,
        key=key,
        notify=notify,
        firedAtMs=episode.fired_ms,
        notificationCount=episode.count,
        version=episode.seq,
        firstExecutionId=episode.execution_id,
        lastNotifiedAtMs=episode.notified_ms,
    )
