"""Which offsets may be committed, and lanes that bound work per destination (pure + asyncio).

Records of one partition finish out of order (a slow receiver, a retry waiting on its tier);
a partition's committed offset only ever moves to just after the highest contiguous finished
record, so a restart redoes unfinished work and nothing else.
"""

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Literal

import structlog

log = structlog.get_logger(__name__)


class OffsetTracker:
    """Offsets handed out and finished on one partition."""

    def __init__(self) -> None:
        self._order: deque[int] = deque()  # offsets read and not yet passed, in order
        self._finished: set[int] = set()
        self._committable: int | None = None

    def add(self, offset: int) -> None:
        """A record was read (offsets arrive in increasing order)."""
        self._order.append(offset)

    def finish(self, offset: int) -> None:
        """A record's work is done (delivered, failed for good, or scheduled again)."""
        self._finished.add(offset)
        order, finished = self._order, self._finished
        while order and order[0] in finished:
            first = order.popleft()
            finished.discard(first)
            self._committable = first + 1

    def take_commit(self) -> int | None:
        """The offset to commit, once per advance."""
        committable, self._committable = self._committable, None
        return committable

    @property
    def outstanding(self) -> int:
        """Records read and not yet finished."""
        return len(self._order)


# What a job calls once its lane slot may go to the next job while it goes on (writing down what
# it did); a job that never calls it leaves its slot when it ends.
Leave = Callable[[], None]
Job = Callable[[Leave], Awaitable[None]]
# Called once a job is among the next of its lane to run (see `ready_ahead`), or runs at once:
# time to get ready, so that the job does not wait for it in its slot.
Prepare = Callable[[], None]
MAX_AHEAD = 4  # times `in_flight`: the most waiting jobs of a lane got ready at once


def smoothed(average: float | None, value: float) -> float:
    """A running average where the newest value weighs a fifth (the first is taken as it is)."""
    return value if average is None else average + 0.2 * (value - average)


def ready_ahead(in_flight: int, round_trip_s: float, slot_s: float | None) -> int:
    """How many waiting jobs of a lane to get ready: those due to start within two round trips
    of getting ready (a job holds its slot `slot_s` on average, so `in_flight / slot_s` start per
    second; two, as both times vary), at least `in_flight` and at most `MAX_AHEAD` times that.

    With a receiver slower than the round trip, the next `in_flight` are enough; with one that
    answers in a few milliseconds, a round trip of 7-11 ms (the embedded broker under that load)
    needs several times as many: with only the next `in_flight` ready, jobs waited for it in
    their slots (bench_dispatch, medians of three runs alternating with that code: 2,811
    deliveries/s then, 3,586 now)."""
    if not slot_s or round_trip_s <= 0:
        return in_flight
    due = math.ceil(2 * in_flight * round_trip_s / slot_s)
    return max(in_flight, min(MAX_AHEAD * in_flight, due))


# A lane takes a job now, is busy (wait for it), or has stalled (put its work elsewhere).
Room = Literal["free", "busy", "stalled"]


class Lanes:
    """One lane per destination: at most `in_flight` jobs running and `queued` waiting.

    A full lane refuses work (`offer` returns False) instead of blocking the caller; `room` tells
    a lane that is merely busy (wait for it) from one whose receiver has stopped answering for
    `stall_s` (put its work elsewhere), so other lanes keep going. A job's `prepare` runs once,
    when the job is among the next `ready_ahead` of its lane, never earlier: `round_trip_s`
    says how long getting ready takes (0: the next `in_flight`), and jobs tell how long their
    work held a slot once they were ready (`served`).
    """

    def __init__(
        self,
        in_flight: int,
        queued: int,
        stall_s: float = 1.0,
        round_trip_s: Callable[[], float] = lambda: 0.0,
    ) -> None:
        self.in_flight = in_flight
        self.queued = queued
        self.stall_s = stall_s
        self.round_trip_s = round_trip_s
        self._running: dict[str, int] = {}
        self._waiting: dict[str, deque[tuple[Job, Prepare | None]]] = {}
        self._ready: dict[str, int] = {}  # lane -> how many of its first waiting jobs are ready
        self._slot_s: dict[str, float] = {}  # lane -> running average of `served` times
        self._tasks: set[asyncio.Task[None]] = set()
        self._moved: dict[str, float] = {}  # lane -> when a job of it last ended (or began)

    def offer(self, lane: str, job: Job, prepare: Prepare | None = None) -> bool:
        """Start or queue `job` on `lane`; False if the lane is full."""
        if self._running.get(lane, 0) < self.in_flight:
            if prepare is not None:
                prepare()
            self._start(lane, job)
            return True
        waiting = self._waiting.setdefault(lane, deque())
        if len(waiting) >= self.queued:
            return False
        waiting.append((job, prepare))
        self._get_ready(lane, waiting)
        return True

    def _get_ready(self, lane: str, waiting: deque[tuple[Job, Prepare | None]]) -> None:
        """Prepare the lane's waiting jobs up to `ready_ahead`, each once, in order."""
        ahead = ready_ahead(self.in_flight, self.round_trip_s(), self._slot_s.get(lane))
        ready = self._ready.get(lane, 0)
        while ready < min(ahead, len(waiting)):
            prepare = waiting[ready][1]
            if prepare is not None:
                prepare()
            ready += 1
        self._ready[lane] = ready

    def served(self, lane: str, seconds: float) -> None:
        """A job of `lane` held its slot `seconds` once ready (waiting to be ready excluded: a
        lane that waits for it would otherwise look slow and get fewer jobs ready)."""
        if lane in self._running:
            self._slot_s[lane] = smoothed(self._slot_s.get(lane), seconds)

    def room(self, lane: str) -> Room:
        """Whether `lane` takes a job now, is busy, or has stalled (full, and none of its jobs
        ended for `stall_s`: a slow receiver)."""
        if self._running.get(lane, 0) < self.in_flight:
            return "free"
        if len(self._waiting.get(lane, ())) < self.queued:
            return "free"
        moved = self._moved.get(lane)
        stalled = moved is not None and time.monotonic() - moved > self.stall_s
        return "stalled" if stalled else "busy"

    def _start(self, lane: str, job: Job) -> None:
        if lane not in self._running:
            self._moved[lane] = time.monotonic()
        self._running[lane] = self._running.get(lane, 0) + 1
        task = asyncio.create_task(self._run(lane, job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, lane: str, job: Job) -> None:
        left = False

        def leave() -> None:
            nonlocal left
            if not left:
                left = True
                self._leave(lane)

        try:
            await job(leave)
        except Exception:  # a job's record stays unfinished: redone after a restart
            log.exception("dispatcher.job_failed", lane=lane)
        finally:
            leave()

    def _leave(self, lane: str) -> None:
        """A job's slot is free: the lane's next job starts, and one more gets ready."""
        self._moved[lane] = time.monotonic()
        self._running[lane] -= 1
        waiting = self._waiting.get(lane)
        if waiting:
            self._start(lane, waiting.popleft()[0])
            self._ready[lane] = max(0, self._ready.get(lane, 0) - 1)
            self._get_ready(lane, waiting)  # more among the next to run
        if not self._running[lane] and not waiting:
            del self._running[lane]
            for per_lane in (self._waiting, self._ready, self._slot_s, self._moved):
                per_lane.pop(lane, None)

    async def drain(self, timeout_s: float) -> None:
        """Wait for running and queued jobs, at most `timeout_s`."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while self._tasks:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                break
            await asyncio.wait(set(self._tasks), timeout=left)

    async def cancel(self) -> None:
        """Stop every job now (their records stay uncommitted and are redone)."""
        self._waiting.clear()  # first, or a cancelled job would start the next one
        self._ready.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
