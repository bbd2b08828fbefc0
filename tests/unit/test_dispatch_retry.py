"""The retry schedule, delay tiers, commit points and lanes of the dispatcher."""

import asyncio
import random

import pytest

from services.dispatcher.progress import Lanes, Leave, OffsetTracker
from services.dispatcher.retry import (
    MAX_DELAY_S,
    Schedule,
    next_delay_s,
    release_at_ms,
    tier_for,
    tier_number,
)

DEFAULT = Schedule()


def test_schedule_delays_with_jitter_then_no_more_after_six_attempts() -> None:
    rng = random.Random(1)
    for attempt, base in enumerate((5, 15, 60, 180, 600), start=1):
        for _ in range(200):
            delay = next_delay_s(DEFAULT, attempt, None, rng)
            assert delay is not None
            assert base <= delay <= base * 1.1
    assert DEFAULT.max_attempts == 6
    assert next_delay_s(DEFAULT, 6, None, rng) is None


def test_a_longer_retry_after_wins_and_is_capped_at_an_hour() -> None:
    rng = random.Random(2)
    assert next_delay_s(DEFAULT, 1, 42.0, rng) == 42.0
    shorter = next_delay_s(DEFAULT, 2, 1.0, rng)
    assert shorter is not None and 15 <= shorter <= 16.5
    assert next_delay_s(DEFAULT, 1, 99_999.0, rng) == MAX_DELAY_S


def test_scaled_schedule_from_configuration() -> None:
    scaled = Schedule((0.2, 0.4))
    assert scaled.max_attempts == 3
    assert scaled.tiers() == ["deliveries.retry.1", "deliveries.retry.2"]
    assert next_delay_s(scaled, 3, None, random.Random(3)) is None


@pytest.mark.parametrize(
    ("delay", "tier"), [(2, 1), (5, 1), (5.4, 1), (15, 2), (59, 2), (60, 3), (600, 5), (3600, 5)]
)
def test_tier_is_the_longest_that_fits(delay: float, tier: int) -> None:
    assert tier_for(DEFAULT, delay) == tier


def test_tier_numbers_from_topic_names() -> None:
    assert tier_number("deliveries.retry.3") == 3
    assert tier_number("notifications") is None
    assert tier_number("deliveries.retry.x") is None


def test_a_tier_releases_its_head_when_due_or_when_its_own_wait_is_over() -> None:
    assert release_at_ms(DEFAULT, 1, enqueued_ms=1_000, due_ms=6_200) == 6_200
    # due in an hour (Retry-After) but sitting in the 10-minute tier: leaves after 660 s
    assert release_at_ms(DEFAULT, 5, enqueued_ms=0, due_ms=3_600_000) == 660_000


def test_commits_move_only_over_contiguous_finished_records() -> None:
    tracker = OffsetTracker()
    for offset in range(10, 15):
        tracker.add(offset)
    tracker.finish(12)
    tracker.finish(11)
    assert tracker.take_commit() is None  # 10 is still running
    tracker.finish(10)
    assert tracker.take_commit() == 13
    assert tracker.take_commit() is None  # once per advance
    tracker.finish(14)
    assert tracker.take_commit() is None
    tracker.finish(13)
    assert tracker.take_commit() == 15
    assert tracker.outstanding == 0


async def test_lanes_bound_work_per_destination_and_isolate_destinations() -> None:
    lanes = Lanes(in_flight=2, queued=3)
    gate = asyncio.Event()
    running = {"slow": 0, "fast": 0}
    peak = {"slow": 0, "fast": 0}
    done: list[str] = []

    def job(lane: str, wait: bool):  # type: ignore[no-untyped-def]
        async def run(leave: Leave) -> None:
            running[lane] += 1
            peak[lane] = max(peak[lane], running[lane])
            if wait:
                await gate.wait()
            else:
                await asyncio.sleep(0.001)
            running[lane] -= 1
            done.append(lane)

        return run

    accepted = [lanes.offer("slow", job("slow", True)) for _ in range(6)]
    assert accepted == [True] * 5 + [False]  # 2 running + 3 queued, then full
    # a full slow lane does not hold up another destination (3 queued behind 2 running)
    assert all(lanes.offer("fast", job("fast", False)) for _ in range(5))
    await asyncio.sleep(0.05)
    assert all(lanes.offer("fast", job("fast", False)) for _ in range(5))
    await asyncio.sleep(0.05)
    assert done.count("fast") == 10 and "slow" not in done
    gate.set()
    await lanes.drain(5)
    assert done.count("slow") == 5
    assert peak == {"slow": 2, "fast": 2}


Gated = tuple[list[int], list[int], list[asyncio.Event]]


def _offer_gated(lanes: Lanes, gates: list[asyncio.Event]) -> Gated:
    """Offer job n (each waiting for gates[n]) to one lane; returns the jobs prepared and the
    jobs run, in order, and an event per job set when it runs. A job asserts that it was
    prepared before it runs."""
    prepared: list[int] = []
    ran: list[int] = []
    running = [asyncio.Event() for _ in gates]

    def job(n: int):  # type: ignore[no-untyped-def]
        async def run(leave: Leave) -> None:
            assert n in prepared  # never run unprepared
            ran.append(n)
            running[n].set()
            await gates[n].wait()

        return run

    for n in range(len(gates)):
        assert lanes.offer("lane", job(n), lambda n=n: prepared.append(n))
    return prepared, ran, running


async def test_a_job_is_prepared_once_it_is_among_the_next_to_run_and_not_before() -> None:
    lanes = Lanes(in_flight=2, queued=10)
    gate = asyncio.Event()
    prepared, ran, _ = _offer_gated(lanes, [gate] * 6)
    # 2 running and the next 2 queued are prepared; the last 2 queued are not yet
    assert prepared == [0, 1, 2, 3]
    gate.set()
    await lanes.drain(5)
    assert prepared == ran == list(range(6))


async def test_a_lane_has_room_until_full_then_is_busy_until_it_stalls() -> None:
    lanes = Lanes(in_flight=1, queued=1, stall_s=0.05)
    gate = asyncio.Event()

    async def held(leave: Leave) -> None:
        await gate.wait()

    assert lanes.room("a") == "free"
    assert lanes.offer("a", held)
    assert lanes.room("a") == "free"  # one more may queue
    assert lanes.offer("a", held)
    assert lanes.room("a") == "busy"
    assert lanes.room("b") == "free"  # another destination
    await asyncio.sleep(0.1)
    assert lanes.room("a") == "stalled"  # nothing of it ended for longer than stall_s
    gate.set()
    await lanes.drain(5)
    assert lanes.room("a") == "free"


async def test_a_job_that_leaves_gives_its_slot_to_the_next_while_it_goes_on() -> None:
    lanes = Lanes(in_flight=1, queued=5)
    left, finish = asyncio.Event(), asyncio.Event()
    order: list[str] = []

    async def first(leave: Leave) -> None:
        await left.wait()
        leave()
        leave()  # a second call changes nothing
        await finish.wait()
        order.append("first ended")

    async def second(leave: Leave) -> None:
        order.append("second ran")

    assert lanes.offer("a", first) and lanes.offer("a", second)
    await asyncio.sleep(0.01)
    assert order == []  # the slot is taken until the first job leaves it
    left.set()
    await asyncio.sleep(0.01)
    assert order == ["second ran"]
    finish.set()
    await lanes.drain(5)
    assert order == ["second ran", "first ended"]
    assert lanes.room("a") == "free"


def test_jobs_get_ready_as_far_ahead_as_start_within_two_round_trips() -> None:
    from services.dispatcher.progress import MAX_AHEAD, ready_ahead

    assert ready_ahead(16, 0.0, 0.001) == 16  # no round trip known yet: the next in_flight
    assert ready_ahead(16, 0.004, None) == 16  # no slot time known yet
    assert ready_ahead(16, 0.004, 0.2) == 16  # a slow receiver hides the round trip
    assert ready_ahead(16, 0.003, 0.004) == 24  # 16 start every 4 ms: 24 within 2 x 3 ms
    assert ready_ahead(16, 0.004, 0.0001) == MAX_AHEAD * 16  # never more than that


async def test_a_fast_lane_gets_more_of_its_waiting_jobs_ready_once_its_jobs_time_is_known() -> (
    None
):
    lanes = Lanes(in_flight=2, queued=20, round_trip_s=lambda: 0.004)
    gates = [asyncio.Event() for _ in range(12)]
    prepared, ran, running = _offer_gated(lanes, gates)
    assert prepared == [0, 1, 2, 3]  # the next in_flight: no time known yet
    lanes.served("lane", 0.001)  # a request took 1 ms: 2 start per ms, 8 within the round trip
    gates[0].set()
    await asyncio.wait_for(running[2].wait(), 5)  # job 0 left its slot and job 2 took it
    assert ran == [0, 1, 2] and prepared == list(range(11))  # up to 8 waiting ones ready
    for gate in gates:
        gate.set()
    await lanes.drain(5)
    assert ran == prepared == list(range(12))  # each prepared once, in order
    lanes.served("lane", 0.001)  # an emptied lane keeps nothing
    assert lanes._slot_s == {}
