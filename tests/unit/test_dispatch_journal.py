"""The dispatcher's journal: what a restarted process, or one that takes partitions over, learns
from `delivery-log`."""

import asyncio
import contextlib
from collections.abc import AsyncIterator

import msgspec
import pytest

from schemas import topics
from schemas.deliveries import AttemptsStarted, DeliveryAttempt, LogEntry
from services.dispatcher.journal import STARTED, Done, Follower, Journal, Starts
from tests.brokers import MemoryBroker


def ended(delivery: str, attempt: int, outcome: str = "retrying") -> DeliveryAttempt:
    return DeliveryAttempt(
        v=1, deliveryId=delivery, eventId="evt_1", eventType="t", subscriptionId="ntf_1",
        projectId="prj_1", notificationType="webhook", round=0, attempt=attempt,
        outcome=outcome, attemptedAtMs=1, durationMs=1, target="https://x",  # type: ignore[arg-type]
        nextAttemptAtMs=5000 if outcome == "retrying" else None,
    )  # fmt: skip


def started(*keys: tuple[str, int, int]) -> AttemptsStarted:
    return AttemptsStarted(v=1, attempts=list(keys), startedAtMs=1)


def test_a_start_without_an_end_is_an_attempt_left_in_flight() -> None:
    journal = Journal()
    journal.note(started(("dlv_a", 0, 1), ("dlv_b", 0, 2)))
    journal.note(ended("dlv_a", 1))
    assert journal.done[("dlv_a", 0, 1)] == Done("retrying", 5000)
    assert journal.done[("dlv_b", 0, 2)] == Done(STARTED, None)


@pytest.mark.parametrize("end_first", [False, True])
def test_an_end_wins_over_its_start_in_either_order(end_first: bool) -> None:
    # A start batch and the end of one of its attempts live on different partitions.
    entries: list[LogEntry] = [started(("dlv_a", 0, 3)), ended("dlv_a", 3, "delivered")]
    journal = Journal()
    for entry in reversed(entries) if end_first else entries:
        journal.note(entry)
    assert journal.done[("dlv_a", 0, 3)] == Done("delivered", None)


def test_the_journal_forgets_its_oldest_tenth_past_its_limit() -> None:
    journal = Journal(limit=20)
    for n in range(21):
        journal.note(ended(f"dlv_{n}", 1))
        journal.claim((f"dlv_{n}", 0, 1))
    assert ("dlv_0", 0, 1) not in journal.done and ("dlv_0", 0, 1) not in journal.claimed
    assert ("dlv_2", 0, 1) in journal.done and len(journal.done) == 19


def test_claims_keep_a_second_copy_from_running() -> None:
    journal = Journal()
    assert journal.claim(("dlv_a", 0, 1))
    assert not journal.claim(("dlv_a", 0, 1))
    assert journal.claim(("dlv_a", 0, 2))


async def test_starts_in_one_turn_share_one_record_and_wait_for_it() -> None:
    written: list[AttemptsStarted] = []
    gate = asyncio.Event()

    async def write(value: bytes) -> None:
        await gate.wait()
        written.append(msgspec.json.decode(value, type=AttemptsStarted))

    starts = Starts(write)
    marks = [starts.mark((f"dlv_{n}", 0, 1)) for n in range(3)]
    assert marks[0] is marks[1] is marks[2]  # one record for the three
    await asyncio.sleep(0.01)
    assert not marks[0].done()  # nothing may be sent before the start is on the log
    gate.set()
    await asyncio.shield(marks[0])
    await asyncio.shield(starts.mark(("dlv_9", 0, 2)))
    assert [s.attempts for s in written] == [
        [("dlv_0", 0, 1), ("dlv_1", 0, 1), ("dlv_2", 0, 1)],
        [("dlv_9", 0, 2)],
    ]


async def test_a_start_that_cannot_be_written_fails_its_attempts() -> None:
    async def write(value: bytes) -> None:
        raise ConnectionError("broker gone")

    starts = Starts(write)
    with pytest.raises(ConnectionError):
        await asyncio.shield(starts.mark(("dlv_a", 0, 1)))


@contextlib.asynccontextmanager
async def following(
    broker: MemoryBroker, journal: Journal, per_partition: int
) -> AsyncIterator[Follower]:
    """A follower of `broker`'s `delivery-log` into `journal`, reading until the block ends."""
    follower = Follower(broker.consumer(), journal, per_partition)
    await follower.start()
    stop = asyncio.Event()
    reading = asyncio.create_task(follower.run(stop))
    try:
        yield follower
    finally:
        stop.set()
        await asyncio.wait_for(reading, 5)


async def test_the_follower_reads_the_tail_then_what_other_members_write_on() -> None:
    broker = MemoryBroker()
    await broker.create_topics([topics.DELIVERY_LOG], 3)
    producer = broker.producer()
    encode = msgspec.json.encode
    for n in range(5):  # older than the tail the follower reads back
        await producer.send_and_wait(topics.DELIVERY_LOG, encode(started(("dlv_old", 0, n))))
    await producer.send_and_wait(topics.DELIVERY_LOG, encode(started(("dlv_a", 0, 1))))
    await producer.send_and_wait(topics.DELIVERY_LOG, b"not an entry")
    journal = Journal()
    async with following(broker, journal, per_partition=2) as follower:
        assert await follower.caught_up(timeout_s=5)
        assert journal.done[("dlv_a", 0, 1)].outcome == STARTED
        assert ("dlv_old", 0, 0) not in journal.done
        # another member begins an attempt and ends one: known once caught up again
        await producer.send_and_wait(topics.DELIVERY_LOG, encode(started(("dlv_b", 0, 1))))
        await producer.send_and_wait(topics.DELIVERY_LOG, encode(ended("dlv_a", 1, "delivered")))
        assert await follower.caught_up(timeout_s=5)
        assert journal.done[("dlv_b", 0, 1)].outcome == STARTED
        assert journal.done[("dlv_a", 0, 1)].outcome == "delivered"


async def test_the_follower_reads_only_when_asked_and_from_the_tail_when_far_behind() -> None:
    broker = MemoryBroker()
    await broker.create_topics([topics.DELIVERY_LOG], 1)
    producer = broker.producer()
    encode = msgspec.json.encode
    journal = Journal()
    async with following(broker, journal, per_partition=3) as follower:
        assert await follower.caught_up(timeout_s=5)
        for n in range(10):  # this member's own attempts, while no assignment asks
            await producer.send_and_wait(topics.DELIVERY_LOG, encode(started(("dlv_own", 0, n))))
        for _ in range(3):  # the reader goes round, and reads nothing
            await asyncio.wait_for(follower._round.wait(), 5)
        assert follower.records == 0 and not journal.done
        assert await follower.caught_up(timeout_s=5)  # an assignment: the last three only
        assert sorted(attempt for _, _, attempt in journal.done) == [7, 8, 9]
        assert follower.records == 3
