"""Silences in the alert engine, on records without Kafka (the harness of test_alerts_engine):
what they mute, the one notification when one ends, and replays that decide the same."""

from datetime import datetime, timedelta
from typing import Any

import msgspec

from schemas import topics
from schemas.events import topic_key
from schemas.notifications import SubscriptionRecord
from schemas.silences import Matchers, SilenceRecord
from services.alerts import engine as engine_module
from services.alerts.views import partition_of
from tests.factories import execution, execution_record
from tests.unit.test_alerts_engine import PARTITIONS, PROJECT, T0, World, subscription


def ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def minutes(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


def failing(sub_id: str = "ntf_fail", **config: Any) -> SubscriptionRecord:
    rule = {"rule": "consecutive_failures", "consecutiveFailures": 1} | config
    return msgspec.structs.replace(subscription(rule=rule), id=sub_id)


def slow(sub_id: str = "ntf_slow") -> SubscriptionRecord:
    rule = {"rule": "latency_threshold", "durationThresholdMs": 1000}
    return msgspec.structs.replace(subscription(rule=rule), id=sub_id)


def silence(
    version: int = 1, ended: datetime | None = None, ends: datetime | None = None, **matchers: Any
) -> SilenceRecord:
    return SilenceRecord(
        v=1, id="sil_maint", projectId=PROJECT, version=version,
        matchers=msgspec.convert(matchers, Matchers), createdAtMs=ms(minutes(-5)),
        startsAtMs=ms(minutes(-5)), endsAtMs=ms(ends or minutes(120)),
        endedAtMs=None if ended is None else ms(ended),
    )  # fmt: skip


class Recorder(World):
    """A world that remembers every record it handled, to replay them into a fresh one."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[tuple[str, int, bytes, bytes | None]] = []

    def message(self, topic: str, partition: int, key: bytes, value: Any) -> Any:
        self.log.append((topic, partition, key, value))
        return super().message(topic, partition, key, value)

    async def silence(self, record: SilenceRecord) -> None:
        value = msgspec.json.encode(record)
        for p in range(PARTITIONS):
            key = f"{record.id}/{p}".encode()
            await self.engine.handle(self.message(topics.SILENCES, p, key, value))

    async def markers(self, record: SilenceRecord) -> dict[int, int]:
        """The silence as a marker on every partition of executions; the offsets it got."""
        offsets = {}
        for p in range(PARTITIONS):
            key, value = f"{record.id}/{p}".encode(), msgspec.json.encode(record)
            message = self.message(topics.EXECUTIONS, p, key, value)
            offsets[p] = message.offset
            await self.engine.handle(message)
        return offsets

    async def compacted(self, record: SilenceRecord, offsets: dict[int, int]) -> None:
        """The silence's compacted records, each with its marker's offset on its partition."""
        for p, offset in offsets.items():
            value = msgspec.json.encode(msgspec.structs.replace(record, markerOffset=offset))
            key = f"{record.id}/{p}".encode()
            await self.engine.handle(self.message(topics.SILENCES, p, key, value))

    def next_markers(self) -> dict[int, int]:
        """The offsets markers written now would get on executions."""
        return {p: self.offsets[topics.EXECUTIONS, p] for p in range(PARTITIONS)}

    async def run(self, execution_id: str, workflow: str, at: float, **fields: Any) -> None:
        ended = minutes(at)
        event = execution(execution_id, workflow, ended=ended, **({"level": "error"} | fields))
        record = execution_record(PROJECT, event, received_at_ms=ms(ended), plan="pro")
        key = topic_key(PROJECT, workflow)
        partition = partition_of(key, PARTITIONS)
        await self.engine.handle(self.message(topics.EXECUTIONS, partition, key, record))

    def sent_alerts(self) -> list[tuple[str, str, str | None]]:
        """(subscription, workflow, execution) of each notification sent."""
        out = []
        for r in self.sent:
            data = msgspec.to_builtins(r.payload)["data"]
            out.append((r.subscriptionId, data["workflowId"], data.get("executionId")))
        return out


def silenced_count() -> float:
    return engine_module.SILENCED.labels("fired")._value.get()  # type: ignore[attr-defined,no-any-return]


async def test_a_workflow_matcher_mutes_only_that_workflow() -> None:
    world = Recorder()
    await world.subscription_on_stream(failing())
    await world.silence(silence(workflowIds=["wf-quiet"]))
    before = silenced_count()
    await world.run("ex-1", "wf-quiet", 1)
    await world.run("ex-2", "wf-loud", 1)
    assert world.sent_alerts() == [("ntf_fail", "wf-loud", "ex-2")]
    assert silenced_count() == before + 1


async def test_a_rule_matcher_mutes_only_that_rule() -> None:
    world = Recorder()
    await world.subscription_on_stream(failing())
    await world.subscription_on_stream(slow())
    await world.silence(silence(rules=["latency_threshold"]))
    await world.run("ex-1", "wf1", 1, duration_ms=5000)  # fails and is slow: both rules hold
    assert world.sent_alerts() == [("ntf_fail", "wf1", "ex-1")]


async def test_a_subscription_matcher_and_an_inactive_silence() -> None:
    world = Recorder()
    await world.subscription_on_stream(failing("ntf_a"))
    await world.subscription_on_stream(failing("ntf_b"))
    await world.silence(silence(subscriptionIds=["ntf_a"], ends=minutes(30)))
    await world.run("ex-1", "wf1", 1)
    assert [s for s, _, _ in world.sent_alerts()] == ["ntf_b"]
    world.sent.clear()
    await world.run("ex-ok", "wf1", 2, level="info")  # closes both episodes
    await world.run("ex-2", "wf1", 90)  # after the silence's end: nothing mutes it
    assert sorted(s for s, _, _ in world.sent_alerts()) == ["ntf_a", "ntf_b"]


async def test_ending_a_silence_while_firing_sends_one_notification_not_a_burst() -> None:
    world = Recorder()
    await world.subscription_on_stream(failing())
    await world.silence(silence())
    before = silenced_count()
    for n in range(1, 4):  # every failure is muted (the first counts; the cooldown holds the rest)
        await world.run(f"ex-{n}", "wf1", n)
    await world.tick(minutes(5))
    assert world.sent == []
    assert silenced_count() == before + 1
    await world.silence(silence(version=2, ended=minutes(10)))
    await world.tick(minutes(9))  # still before the end, by event time
    assert world.sent == []
    await world.tick(minutes(10))
    assert world.sent_alerts() == [("ntf_fail", "wf1", None)]
    for n in range(11, 15):
        await world.tick(minutes(n))
    await world.run("ex-5", "wf1", 15)  # within the hour's cooldown of the one just sent
    assert len(world.sent) == 1
    await world.run("ex-6", "wf1", 75)  # a repeat, once the cooldown is over
    assert len(world.sent) == 2


async def test_a_window_that_closes_while_firing_sends_one_notification() -> None:
    world = Recorder()
    await world.subscription_on_stream(failing())
    await world.silence(silence(ends=minutes(20)))
    await world.run("ex-1", "wf1", 1)
    await world.tick(minutes(19))
    assert world.sent == []
    await world.tick(minutes(20))
    await world.tick(minutes(21))
    assert len(world.sent) == 1
    alert = msgspec.to_builtins(world.sent[0].payload)["data"]["alert"]
    assert alert["rule"] == "consecutive_failures" and alert["observed"] == 1


async def test_a_silence_that_ends_after_the_condition_cleared_sends_nothing() -> None:
    world = Recorder()
    await world.subscription_on_stream(failing(notifyOnResolve=True))
    await world.silence(silence(ends=minutes(20)))
    await world.run("ex-1", "wf1", 1)
    await world.run("ex-ok", "wf1", 2, level="info")  # resolved while muted: never delivered
    await world.tick(minutes(21))
    assert world.sent == []


async def test_no_activity_is_muted_then_notified_once_when_the_silence_ends() -> None:
    world = Recorder()
    await world.subscription_on_stream(
        subscription(rule={"rule": "no_activity", "inactivityHours": 0.5})
    )
    await world.silence(silence(ends=minutes(60)))
    await world.run("ex-1", "wf1", 0, level="info")
    for n in range(30, 60, 5):
        await world.tick(minutes(n))
    assert world.sent == []
    await world.tick(minutes(60))  # the silence's end
    await world.tick(minutes(61))
    assert len(world.sent) == 1
    assert world.sent[0].payload.type == "workflow.alert.no_activity"


async def test_a_replay_into_a_fresh_engine_decides_the_same() -> None:
    live = Recorder()
    await live.subscription_on_stream(failing())
    await live.subscription_on_stream(slow())
    await live.silence(silence(workflowIds=["wf1"]))
    await live.run("ex-1", "wf1", 1)
    await live.run("ex-2", "wf2", 2, duration_ms=5000)
    await live.tick(minutes(5))
    await live.silence(silence(version=2, ended=minutes(8), workflowIds=["wf1"]))
    await live.run("ex-3", "wf1", 9, duration_ms=5000)
    await live.tick(minutes(10))
    await live.tick(minutes(11))
    assert len(live.sent) >= 2

    async def replay(read_ahead: bool) -> Recorder:
        fresh = Recorder()
        if read_ahead:  # the compacted topic's last version, read when partitions are assigned
            for p in range(PARTITIONS):
                value = msgspec.json.encode(silence(2, minutes(8), workflowIds=["wf1"]))
                fresh.engine.views.preload_silence(p, f"sil_maint/{p}".encode(), value)
        for topic, partition, key, value in live.log:
            await fresh.engine.handle(fresh.message(topic, partition, key, value))
        return fresh

    for read_ahead in (False, True):
        fresh = await replay(read_ahead)
        assert [r.deliveryId for r in fresh.sent] == [r.deliveryId for r in live.sent]
        assert fresh.tables.states == live.tables.states


# ---- markers on executions: a silence version applies to the executions after its marker ----


async def test_an_execution_after_the_markers_is_muted_before_the_compacted_records_arrive() -> (
    None
):
    world = Recorder()
    await world.subscription_on_stream(failing())
    offsets = await world.markers(silence(workflowIds=["wf1"]))
    await world.run("ex-1", "wf1", 1)  # the silences topic has not been read yet
    await world.run("ex-2", "wf2", 1)
    assert world.sent_alerts() == [("ntf_fail", "wf2", "ex-2")]
    await world.compacted(silence(workflowIds=["wf1"]), offsets)
    await world.run("ex-3", "wf1", 2)
    assert world.sent_alerts() == [("ntf_fail", "wf2", "ex-2")]
    assert world.dead == []


async def test_an_execution_before_the_markers_is_not_muted_by_a_silence_read_first() -> None:
    # The compacted records are consumed before the engine reaches the markers on executions:
    # an execution produced before the silence was created is still decided without it.
    world = Recorder()
    await world.subscription_on_stream(failing())
    offsets = world.next_markers()
    await world.compacted(silence(), offsets)
    await world.run("ex-0", "wf0", 1)  # ended after startsAt, but produced before the markers
    await world.markers(silence())
    await world.run("ex-1", "wf1", 1)
    assert world.sent_alerts() == [("ntf_fail", "wf0", "ex-0")]


async def test_an_ended_version_applies_from_its_markers() -> None:
    world = Recorder()
    await world.subscription_on_stream(failing())
    await world.compacted(silence(), await world.markers(silence()))
    ended = silence(version=2, ended=minutes(2))
    await world.compacted(ended, world.next_markers())  # the end, read before its markers
    await world.run("ex-1", "wf1", 3)  # produced before the end's markers: the first version
    await world.markers(ended)
    await world.run("ex-2", "wf2", 3)
    assert world.sent_alerts() == [("ntf_fail", "wf2", "ex-2")]


async def test_a_replay_with_markers_decides_the_same_whatever_was_read_ahead() -> None:
    live = Recorder()
    await live.subscription_on_stream(failing())
    await live.run("ex-0", "wf0", 1)  # before the silence: notified
    first = await live.markers(silence())
    await live.run("ex-1", "wf1", 2)  # muted
    await live.compacted(silence(), first)
    await live.tick(minutes(5))
    ended = silence(version=2, ended=minutes(8))
    second = await live.markers(ended)
    await live.run("ex-2", "wf2", 9)  # after the end
    await live.compacted(ended, second)
    await live.tick(minutes(10))  # wf1's muted episode is notified once
    assert [(w, e) for _, w, e in live.sent_alerts()] == [
        ("wf0", "ex-0"), ("wf2", "ex-2"), ("wf1", None)
    ]  # fmt: skip

    async def replay(read_ahead: bool) -> Recorder:
        fresh = Recorder()
        if read_ahead:  # every version of the compacted topic, read when partitions are assigned
            for record, offsets in ((silence(), first), (ended, second)):
                for p, offset in offsets.items():
                    value = msgspec.json.encode(
                        msgspec.structs.replace(record, markerOffset=offset)
                    )
                    fresh.engine.views.preload_silence(p, f"sil_maint/{p}".encode(), value)
        for topic, partition, key, value in live.log:
            await fresh.engine.handle(fresh.message(topic, partition, key, value))
        return fresh

    for read_ahead in (False, True):
        fresh = await replay(read_ahead)
        assert [r.deliveryId for r in fresh.sent] == [r.deliveryId for r in live.sent]
        assert fresh.tables.states == live.tables.states


async def test_a_tick_forgets_silences_over_for_a_week_and_only_those() -> None:
    world = Recorder()
    await world.subscription_on_stream(failing())
    await world.silence(silence(ends=minutes(30)))  # over 30 minutes after T0
    weekly = msgspec.structs.replace(silence(), id="sil_weekly", endsAtMs=None)  # never over
    await world.silence(weekly)
    await world.run("ex-1", "wf1", 1)  # muted
    memory = timedelta(milliseconds=engine_module.SILENCE_MEMORY_MS)

    def kept() -> list[set[str]]:
        views = world.engine.views
        return [{s.id for s in views.project_silences(p, PROJECT)} for p in range(PARTITIONS)]

    await world.tick(minutes(30) + memory)  # over exactly a week: still kept
    assert kept() == [{"sil_maint", "sil_weekly"}] * PARTITIONS
    await world.tick(minutes(31) + memory)
    assert kept() == [{"sil_weekly"}] * PARTITIONS
    assert world.sent_alerts() == []
    # A replay of the same records decides the same and forgets the same.
    replay = Recorder()
    for topic, partition, key, value in world.log:
        await replay.engine.handle(replay.message(topic, partition, key, value))
    assert (
        replay.sent_alerts() == [] and replay.engine.views.silences == world.engine.views.silences
    )
