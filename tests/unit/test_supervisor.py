"""Supervision of the all-in-one runner's services, and the ingest gate of a stop (no sockets)."""

import asyncio
import signal

import pytest

from services.api.intake import Intake
from services.common.errors import Unavailable
from services.localstop import DUPLICATE_WITHIN_S, StopSignals
from services.supervisor import RESTARTS, Backoff, Crashed, Service

FAST = Backoff(first_s=0.01, max_s=0.04)


def restarts(name: str) -> float:
    return RESTARTS.labels(service=name)._value.get()


def test_backoff_doubles_up_to_its_cap_and_resets_after_a_healthy_run() -> None:
    backoff = Backoff(first_s=0.5, max_s=3.0, healthy_s=60.0)
    assert [backoff.next(1.0) for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert backoff.next(61.0) == 0.5


async def test_a_crashing_service_is_restarted_and_counted_until_it_stays_up() -> None:
    runs = 0
    third = asyncio.Event()

    async def job(stop: asyncio.Event) -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            raise RuntimeError("boom")
        if runs == 2:
            return  # ended without being asked: a crash too
        third.set()
        await stop.wait()

    before = restarts("unit-crash")
    service = Service("unit-crash", job, Backoff(first_s=0.01, max_s=0.04))
    service.start()
    await asyncio.wait_for(third.wait(), 5)
    assert await service.stop(1.0)
    assert runs == 3 and service.restarts == 2
    assert restarts("unit-crash") == before + 2


class Runs:
    """A job that counts its runs, says when one is under way, and runs until asked to stop."""

    def __init__(self) -> None:
        self.count = 0
        self.running = asyncio.Event()

    async def __call__(self, stop: asyncio.Event) -> None:
        self.count += 1
        self.running.set()
        await stop.wait()

    async def next_run(self) -> None:
        await asyncio.wait_for(self.running.wait(), 5)
        self.running.clear()


async def test_a_held_service_ends_its_run_starts_none_until_released() -> None:
    runs = Runs()
    service = Service("unit-hold", runs, FAST)
    service.start()
    await runs.next_run()
    service.hold()
    await asyncio.wait_for(service.idle.wait(), 5)
    for _ in range(10):
        await asyncio.sleep(0)
    assert runs.count == 1 and not runs.running.is_set()
    service.release()
    await runs.next_run()
    assert runs.count == 2 and not service.idle.is_set() and service.restarts == 0
    service.hold()
    await asyncio.wait_for(service.idle.wait(), 5)
    assert await service.stop(1.0)  # a held service stops at once
    assert runs.count == 2


async def test_a_held_run_that_hangs_is_abandoned_and_a_fresh_one_starts_on_release() -> None:
    runs, cleaned = 0, asyncio.Event()
    running = asyncio.Event()

    async def job(stop: asyncio.Event) -> None:
        nonlocal runs
        runs += 1
        running.set()
        await stop.wait()
        if runs == 1:
            try:
                await asyncio.Event().wait()  # its end hangs, as on a broker gone away
            finally:
                cleaned.set()

    service = Service("unit-abandon", job, FAST)
    assert not service.abandon()  # nothing runs yet
    service.start()
    await asyncio.wait_for(running.wait(), 5)
    running.clear()
    assert not service.abandon()  # a run nobody asked to end is never cancelled
    service.hold()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.shield(service.idle.wait()), 0.1)
    assert service.abandon()
    await asyncio.wait_for(service.idle.wait(), 5)
    assert cleaned.is_set() and service.restarts == 0  # ended on purpose: not a crash
    service.release()
    await asyncio.wait_for(running.wait(), 5)
    assert runs == 2
    assert await service.stop(1.0)


async def test_killing_the_supervisor_still_cancels_it_while_a_run_is_under_way() -> None:
    runs = Runs()
    service = Service("unit-kill", runs, FAST)
    service.start()
    await runs.next_run()
    assert service.task is not None
    service.task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await service.task
    assert runs.count == 1


async def test_a_stop_during_the_back_off_ends_at_once() -> None:
    ran = asyncio.Event()

    async def job(stop: asyncio.Event) -> None:
        ran.set()
        raise Crashed("always")

    service = Service("unit-backoff", job, Backoff(first_s=30.0))
    service.start()
    await asyncio.wait_for(ran.wait(), 5)
    await asyncio.sleep(0)  # the supervisor enters its back-off
    assert await service.stop(1.0)
    assert service.restarts == 1


async def test_a_service_that_ignores_its_stop_is_reported_then_killed() -> None:
    async def job(stop: asyncio.Event) -> None:
        await asyncio.sleep(3600)

    service = Service("unit-stuck", job, FAST)
    service.start()
    await asyncio.sleep(0.01)
    assert not await service.stop(0.05)
    await service.kill()
    assert service.task is not None and service.task.done()


async def test_the_intake_refuses_once_closed_and_waits_for_requests_in_flight() -> None:
    intake = Intake()
    intake.enter()
    intake.close()
    with pytest.raises(Unavailable) as refused:
        intake.enter()
    assert refused.value.retry_after_s > 0
    assert not await intake.wait_idle(0.01)
    waiting = asyncio.create_task(intake.wait_idle(1.0))
    intake.leave()
    assert await waiting


async def test_a_second_signal_forces_the_stop_but_one_signal_delivered_twice_does_not() -> None:
    signals = StopSignals()
    signals._received(signal.SIGTERM)
    signals._received(signal.SIGTERM)  # the same stop, to the process group and from make
    assert signals.requested.is_set() and not signals.forced.is_set()
    assert signals.reason == "SIGTERM"
    signals.first_at -= DUPLICATE_WITHIN_S
    signals._received(signal.SIGINT)
    assert signals.forced.is_set()
