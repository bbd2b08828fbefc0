"""Alerts as episodes: one id from the first trigger to the resolve, stable across replays;
acknowledgement stops repeats but not the resolve; the events the alerts table is built from."""

from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

from schemas import topics
from schemas.alerts import AckRecord, Alert, AlertEvent
from schemas.events import topic_key
from services.alerts.rules import Acked, never_acked, on_execution, on_tick
from services.alerts.state import ExecutionFacts, Subscription, WorkflowState
from services.alerts.views import partition_of
from tests.factories import execution, execution_record
from tests.unit.test_alerts_engine import PARTITIONS, PROJECT
from tests.unit.test_alerts_silences import Recorder, failing, minutes, ms
from tests.unit.test_rules import MINUTE, T0, Input, run, watch

COOLDOWN_S = 300  # five minutes


def replay_all(
    subs: Sequence[Subscription],
    inputs: Iterable[Input],
    acked: Acked = never_acked,
    state: WorkflowState | None = None,
) -> tuple[WorkflowState, list[Alert]]:
    """Every event the rules return, the quiet ones included."""
    state = state or WorkflowState(workflow_id="w1")
    alerts: list[Alert] = []
    for item in inputs:
        if isinstance(item, int):
            state, out = on_tick(state, subs, item, COOLDOWN_S, acked=acked)
        else:
            state, out = on_execution(state, subs, item, COOLDOWN_S, acked=acked)
        alerts += out
    return state, alerts


def failures(*at_minutes: float) -> list[ExecutionFacts]:
    return [run(T0 + int(m * MINUTE), f"f{m}", failed=True) for m in at_minutes]


def acks(**at: int) -> Acked:
    """An acknowledgement predicate from alert id -> acknowledged at (ms)."""
    return lambda alert_id, at_ms: alert_id in at and at[alert_id] <= at_ms


STREAK = watch("consecutive_failures", consecutiveFailures=2, notifyOnResolve=True)
# Fires at minute 1, repeats at 7 and 13 (cooldown 5 min), resolves at 14.
EPISODE: list[Input] = [*failures(0, 1, 3, 7, 9, 13), run(T0 + 14 * MINUTE, "ok")]


def test_fire_repeats_and_resolve_share_the_episode_id() -> None:
    _, alerts = replay_all([STREAK], EPISODE)
    assert [(a.kind, a.executionId) for a in alerts] == [
        ("fired", "f1"), ("fired", "f7"), ("fired", "f13"), ("resolved", "ok"),
    ]  # fmt: skip
    assert len({a.id for a in alerts}) == 1
    assert alerts[0].id.startswith("alr_")
    assert len({(a.kind, a.key) for a in alerts}) == 4  # each notification its own event
    assert [a.version for a in alerts] == [1, 2, 3, 4]
    assert [a.notificationCount for a in alerts] == [1, 2, 3, 4]
    assert {a.firedAtMs for a in alerts} == {T0 + MINUTE}
    assert {a.firstExecutionId for a in alerts} == {"f1"}


def test_a_new_episode_is_a_new_alert() -> None:
    _, alerts = replay_all([STREAK], [*EPISODE, *failures(20, 21)])
    assert alerts[-1].kind == "fired"
    assert alerts[-1].id != alerts[0].id
    assert (alerts[-1].version, alerts[-1].firedAtMs) == (1, T0 + 21 * MINUTE)


def test_replay_and_restart_reproduce_the_ids() -> None:
    _, first = replay_all([STREAK], EPISODE)
    _, second = replay_all([STREAK], EPISODE)
    assert first == second
    state, head = replay_all([STREAK], EPISODE[:4])
    restored = msgspec.json.decode(msgspec.json.encode(state), type=WorkflowState)
    _, tail = replay_all([STREAK], EPISODE[4:], state=restored)
    assert head + tail == first


def test_an_acknowledged_alert_repeats_no_more_but_resolves() -> None:
    _, live = replay_all([STREAK], EPISODE)
    alert_id = live[0].id
    _, alerts = replay_all([STREAK], EPISODE, acks(**{alert_id: T0 + 2 * MINUTE}))
    assert [(a.kind, a.executionId, a.id) for a in alerts] == [
        ("fired", "f1", alert_id), ("resolved", "ok", alert_id),
    ]  # fmt: skip
    assert alerts[-1].notify and alerts[-1].notificationCount == 2


def test_an_acknowledgement_counts_from_its_event_time() -> None:
    _, live = replay_all([STREAK], EPISODE)
    _, alerts = replay_all([STREAK], EPISODE, acks(**{live[0].id: T0 + 8 * MINUTE}))
    assert [a.executionId for a in alerts] == ["f1", "f7", "ok"]  # f7 came before the ack


def test_a_new_episode_is_not_acknowledged() -> None:
    _, live = replay_all([STREAK], EPISODE)
    acked = acks(**{live[0].id: T0 + 2 * MINUTE})
    _, alerts = replay_all([STREAK], [*EPISODE, *failures(20, 21)], acked)
    assert [(a.kind, a.executionId) for a in alerts][-1] == ("fired", "f21")
    assert alerts[-1].notify and not alerts[-1].silenced


def test_a_resolve_nobody_asked_for_is_recorded_without_a_notification() -> None:
    quiet = watch("consecutive_failures", consecutiveFailures=2)
    _, alerts = replay_all([quiet], EPISODE)
    assert [(a.kind, a.notify) for a in alerts][-1] == ("resolved", False)
    assert alerts[-1].notificationCount == 3  # the three fired notifications
    assert len({a.id for a in alerts}) == 1


def test_no_event_for_an_episode_that_never_notified() -> None:
    once = watch("consecutive_failures", consecutiveFailures=3)
    _, alerts = replay_all([once], [*failures(0, 1), run(T0 + 2 * MINUTE, "ok")])
    assert alerts == []


# The engine: acknowledgements on their topic, alert events produced with the notifications


class AckWorld(Recorder):
    def __init__(self) -> None:
        super().__init__()
        self.events: list[AlertEvent] = []
        self.engine.record_events = self.record_events

    async def record_events(self, events: Sequence[AlertEvent]) -> None:
        self.events.extend(events)

    async def ack(self, alert_id: str, at_ms: int) -> None:
        record = AckRecord(v=1, alertId=alert_id, projectId=PROJECT, acknowledgedAtMs=at_ms)
        value = msgspec.json.encode(record)
        for p in range(PARTITIONS):
            key = f"{alert_id}/{p}".encode()
            await self.engine.handle(self.message(topics.ALERT_ACKS, p, key, value))

    def notified(self) -> list[tuple[str | None, str]]:
        """(execution, alert id) of each notification sent."""
        out = []
        for r in self.sent:
            data: dict[str, Any] = msgspec.to_builtins(r.payload)["data"]
            out.append((data.get("executionId"), data["alert"]["id"]))
        return out


async def _scenario(world: AckWorld, ack: bool) -> None:
    await world.subscription_on_stream(failing(notifyOnResolve=True))
    await world.run("x1", "wf1", 0)
    if ack:
        await world.ack(msgspec.to_builtins(world.sent[0].payload)["data"]["alert"]["id"],
                        ms(minutes(1)))  # fmt: skip
    for n in range(2, 200, 10):  # failing for hours: a repeat every hour when not acknowledged
        await world.run(f"x{n}", "wf1", n)
    await world.run("ok", "wf1", 200, level="info")


async def test_the_engine_follows_acknowledgements_and_records_alert_events() -> None:
    world = AckWorld()
    await _scenario(world, ack=True)
    alert_id = world.notified()[0][1]
    assert world.notified() == [("x1", alert_id), ("ok", alert_id)]
    assert [(e.alertId, e.kind, e.notified, e.version) for e in world.events] == [
        (alert_id, "fired", True, 1), (alert_id, "resolved", True, 2),
    ]  # fmt: skip
    assert world.events[-1].projectId == PROJECT
    assert world.events[-1].notificationCount == 2 and world.events[-1].executionId == "x1"
    assert len({r.eventId for r in world.sent}) == 2

    loud = AckWorld()
    await _scenario(loud, ack=False)
    assert [e for e, _ in loud.notified()] == ["x1", "x62", "x122", "x182", "ok"]
    assert {a for _, a in loud.notified()} == {alert_id}


async def test_a_replay_with_the_acknowledgement_read_ahead_decides_the_same() -> None:
    live = AckWorld()
    await _scenario(live, ack=True)
    fresh = AckWorld()
    acks_first = sorted(live.log, key=lambda r: r[0] != topics.ALERT_ACKS)
    for topic, partition, key, value in acks_first:
        if topic == topics.ALERT_ACKS:
            fresh.views.preload_ack(partition, key, value)
        else:
            await fresh.engine.handle(fresh.message(topic, partition, key, value))
    assert fresh.notified() == live.notified()
    assert fresh.events == live.events
    assert [r.eventId for r in fresh.sent] == [r.eventId for r in live.sent]


# ---- markers on executions: an acknowledgement applies to the executions after its marker ----


class MarkedAcks(AckWorld):
    """Acknowledgements as the outbox writes them: markers on executions, then compacted
    records carrying their markers' offsets. Messages take their offsets when created (the log
    order) and may be handled in another order (which topic the engine reaches first)."""

    def ack_markers(self, record: AckRecord) -> list[Any]:
        value = msgspec.json.encode(record)
        return [self.message(topics.EXECUTIONS, p, f"{record.alertId}/{p}".encode(), value)
                for p in range(PARTITIONS)]  # fmt: skip

    def ack_compacted(self, record: AckRecord, markers: list[Any]) -> list[Any]:
        out = []
        for marker in markers:
            value = msgspec.json.encode(msgspec.structs.replace(record, markerOffset=marker.offset))
            key = f"{record.alertId}/{marker.partition}".encode()
            out.append(self.message(topics.ALERT_ACKS, marker.partition, key, value))
        return out

    def failure(self, execution_id: str, at: float, level: str = "error") -> Any:
        event = execution(execution_id, "wf1", ended=minutes(at), level=level)
        record = execution_record(PROJECT, event, received_at_ms=ms(minutes(at)), plan="pro")
        key = topic_key(PROJECT, "wf1")
        return self.message(topics.EXECUTIONS, partition_of(key, PARTITIONS), key, record)

    async def handle(self, *messages: Any) -> None:
        for message in messages:
            await self.engine.handle(message)

    async def fired(self) -> AckRecord:
        """Fire the alert (x1 at minute 0); its acknowledgement, dated at minute 500."""
        await self.subscription_on_stream(failing(notifyOnResolve=True))
        await self.handle(self.failure("x1", 0))
        alert_id = self.notified()[0][1]
        return AckRecord(
            v=1, alertId=alert_id, projectId=PROJECT, acknowledgedAtMs=ms(minutes(500))
        )


async def test_an_execution_after_the_ack_markers_repeats_no_more_before_the_ack_is_read() -> None:
    # Dated after the executions (a client's clock behind): by event time they would repeat.
    world = MarkedAcks()
    ack = await world.fired()
    markers = world.ack_markers(ack)
    await world.handle(*markers)
    await world.handle(world.failure("x70", 70), world.failure("x130", 130))  # `alert-acks` unread
    await world.handle(*world.ack_compacted(ack, markers))
    await world.handle(world.failure("x190", 190), world.failure("ok", 200, level="info"))
    assert [e for e, _ in world.notified()] == ["x1", "ok"]  # the resolve is still sent
    assert world.dead == []


async def test_an_execution_before_the_ack_markers_is_not_affected_by_an_ack_read_first() -> None:
    world = MarkedAcks()
    ack = await world.fired()
    ack = msgspec.structs.replace(ack, acknowledgedAtMs=ms(minutes(1)))
    early = world.failure("x70", 70)  # produced before the markers, though dated after the ack
    markers = world.ack_markers(ack)
    await world.handle(*world.ack_compacted(ack, markers))  # `alert-acks` read first
    await world.handle(early)
    await world.handle(*markers, world.failure("x140", 140))
    assert [e for e, _ in world.notified()] == ["x1", "x70"]


async def test_a_replay_with_ack_markers_decides_the_same_whatever_was_read_ahead() -> None:
    live = MarkedAcks()
    ack = await live.fired()
    ack = msgspec.structs.replace(ack, acknowledgedAtMs=ms(minutes(1)))
    early = live.failure("x70", 70)  # a repeat: produced before the markers
    markers = live.ack_markers(ack)
    after = live.failure("x140", 140)  # after the markers: no repeat
    compacted = live.ack_compacted(ack, markers)
    await live.handle(early, *markers, after, *compacted)
    await live.tick(minutes(150))
    await live.handle(live.failure("x210", 210), live.failure("ok", 220, level="info"))
    assert [e for e, _ in live.notified()] == ["x1", "x70", "ok"]

    async def replay(read_ahead: bool) -> MarkedAcks:
        fresh = MarkedAcks()
        if read_ahead:  # the compacted topic, read when partitions are assigned
            for message in compacted:
                fresh.views.preload_ack(message.partition, message.key, message.value)
        for topic, partition, key, value in live.log:
            await fresh.engine.handle(fresh.message(topic, partition, key, value))
        return fresh

    for read_ahead in (False, True):
        fresh = await replay(read_ahead)
        assert fresh.notified() == live.notified()
        assert fresh.events == live.events
        assert [r.deliveryId for r in fresh.sent] == [r.deliveryId for r in live.sent]
        assert fresh.tables.states == live.tables.states


def test_an_ack_keeps_its_earliest_marker_and_applies_by_event_time_without_one() -> None:
    world = MarkedAcks()
    ack = AckRecord(v=1, alertId="alr_1", projectId=PROJECT, acknowledgedAtMs=1000)
    world.views.put_ack(0, msgspec.structs.replace(ack, markerOffset=9))
    world.views.put_ack(0, msgspec.structs.replace(ack, markerOffset=4))  # published twice
    world.views.put_ack(0, ack)  # a record without a marker offset forgets none
    assert world.views.ack_of(0, "alr_1") == msgspec.structs.replace(ack, markerOffset=4)
    assert world.views.acknowledged(0, "alr_1", at_ms=0, offset=5)  # after the marker
    assert not world.views.acknowledged(0, "alr_1", at_ms=5000, offset=4)  # not after it
    assert world.views.acknowledged(0, "alr_1", at_ms=1000)  # no offset (a tick): event time
    assert not world.views.acknowledged(0, "alr_1", at_ms=999)
    world.views.put_ack(1, ack)  # written before markers: event time
    assert not world.views.acknowledged(1, "alr_1", at_ms=999, offset=50)
    assert world.views.acknowledged(1, "alr_1", at_ms=1000, offset=0)
