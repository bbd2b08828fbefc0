"""How `codecourier up` stops, within `CC_STOP_TIMEOUT_SECONDS` and with an account on the
terminal: stop taking events, let the log sink store everything accepted (up to the end offsets
taken at the stop), stop alerts and dispatcher, then the sink, the API, and the broker last.
A second Ctrl-C (or SIGTERM) stops at once."""

import asyncio
import contextlib
import signal
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING

import structlog
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition
from prometheus_client import REGISTRY

from schemas import topics
from services.common import kafka
from services.common.errors import AppError
from services.supervisor import Child

if TYPE_CHECKING:
    from services.local import LocalStack

log = structlog.get_logger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_BROKER_ERRORS = (KafkaError, OSError, TimeoutError, AppError)
_LABELS = {"logsink": "log sink"}
DUPLICATE_WITHIN_S = 1.0
LAST_STEP_S = 0.5  # what a step still gets once the bound is used up, before it is cut short


def say(text: str) -> None:
    """One line of the stop account, on standard output at once."""
    with contextlib.suppress(OSError):  # a closed terminal (SIGHUP) must not stop the stop
        print(text, flush=True)


class StopSignals:
    """SIGINT, SIGTERM and SIGHUP: the first asks for a clean stop, the next one forces it."""

    def __init__(self) -> None:
        self.requested = asyncio.Event()
        self.forced = asyncio.Event()
        self.reason = ""
        self.first_at = 0.0

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        """Handle the stop signals on `loop` (instead of dying of them)."""
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, self._received, sig)

    def _received(self, sig: int) -> None:
        if not self.requested.is_set():
            self.reason = signal.Signals(sig).name
            self.first_at = time.monotonic()
            self.requested.set()
        elif time.monotonic() - self.first_at < DUPLICATE_WITHIN_S:
            # One stop signalled twice (to the process group, and forwarded by make): not a
            # second request.
            return
        elif not self.forced.is_set():
            self.forced.set()
            say("  (second signal: stopping at once; what is not stored yet is lost)")


class Stopper:
    """One stop of the stack against one deadline; a forced stop makes every wait end now."""

    def __init__(self, stack: "LocalStack", signals: StopSignals) -> None:
        self.stack = stack
        self.signals = signals
        self.started = time.monotonic()
        self.deadline = self.started + stack.settings.stop_timeout_s
        # What the sink may take: the stops after it need a few seconds of the bound.
        self.reserve_s = min(5.0, stack.settings.stop_timeout_s / 5)
        self.clean = True

    def remaining(self, reserve_s: float = 0.0) -> float:
        """Seconds left before the deadline (less `reserve_s`); 0 once the stop is forced."""
        if self.signals.forced.is_set():
            return 0.0
        return max(0.0, self.deadline - reserve_s - time.monotonic())

    async def within(self, job: Awaitable[object], timeout_s: float) -> bool:
        """Wait for `job` until `timeout_s` or a forced stop; whether it completed."""
        task = asyncio.ensure_future(job)
        forced = asyncio.create_task(self.signals.forced.wait())
        try:
            await asyncio.wait(
                [task, forced], timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            forced.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            return False
        return task.exception() is None

    def line(self, what: str, text: str, since: float) -> None:
        """One line of the account: a piece of the stack and what became of it."""
        say(f"  {what:<11} {text} in {time.monotonic() - since:.1f} s")

    async def close_intake(self) -> None:
        """Refuse new events and wait for the ingest requests in flight."""
        if self.stack.api is None:
            return
        since = time.monotonic()
        intake = self.stack.api.deps.intake
        intake.close()
        idle = await intake.wait_idle(min(5.0, self.remaining(self.reserve_s)))
        busy = "" if idle else f", {intake.in_flight} requests still in flight"
        self.line("events", f"refused from now on (503 + Retry-After){busy}", since)

    async def stop_service(self, name: str, timeout_s: float | None = None) -> None:
        """Stop one supervised service, killing it if it does not stop in time."""
        service = self.stack.services.get(name)
        if service is None:
            return
        since = time.monotonic()
        budget = self.remaining() if timeout_s is None else timeout_s
        label = _LABELS.get(name, name)
        if await self.within(service.stop(budget), budget):
            killed = isinstance(service.job, Child) and service.job.killed
            self.line(label, "killed (SIGTERM not obeyed in time)" if killed else "stopped", since)
            return
        await service.kill()
        self.clean = False
        self.line(label, "killed (it did not stop in time)", since)

    async def drain(self) -> None:
        """Let the log sink store everything accepted, while alerts and dispatcher stop."""
        workers = asyncio.gather(self.stop_service("alerts"), self.stop_service("dispatcher"))
        try:
            if self.stack.api is not None and "logsink" in self.stack.services:
                await self.drain_sink(workers)
        finally:
            await workers

    async def drain_sink(self, workers: Awaitable[object]) -> None:
        """Wait until the sink has committed the end offsets of `executions` taken now, and of
        `delivery-log`, `alert-events` and `alert-acks` taken once `workers` (the dispatcher logs
        its attempts, the engine its alerts) have stopped."""
        since, before = time.monotonic(), _inserted()
        try:
            group_id = self.stack.settings.logsink.group_id
            async with kafka.GroupOffsets(self.stack.bootstrap, group_id) as group:
                ends = await self.ends(topics.EXECUTIONS)
                pending = _behind(ends, await group.committed(ends))
                left = await self.wait_stored(group, ends)
                await workers
                for topic in (topics.DELIVERY_LOG, topics.ALERT_EVENTS, topics.ALERT_ACKS):
                    left += await self.wait_stored(group, await self.ends(topic))
        except _BROKER_ERRORS as exc:
            self.clean = False
            self.line("log sink", f"not drained: the broker is unreachable ({exc!r:.80})", since)
            return
        after = _inserted()
        stored = f" ({after - before:,.0f} executions)" if before is not None and after else ""
        if left:
            self.clean = False
            self.line("log sink", f"NOT stored: {left:,} of {pending:,} pending records", since)
        else:
            self.line("log sink", f"stored {pending:,} pending records{stored}", since)

    async def ends(self, topic: str) -> dict[TopicPartition, int]:
        """The end offsets of `topic` now."""
        return await asyncio.wait_for(kafka.end_offsets(self.stack.bootstrap, [topic]), 5)

    async def wait_stored(self, group: kafka.GroupOffsets, ends: dict[TopicPartition, int]) -> int:
        """Wait until the sink has committed `ends`; the records still missing when it gives up."""
        while True:
            try:
                committed = await asyncio.wait_for(group.committed(ends), 3)
            except _BROKER_ERRORS:
                committed = {}
            left = _behind(ends, committed)
            if not left or not self.remaining(self.reserve_s):
                return left
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.signals.forced.wait(), 0.1)

    async def stop_api(self) -> None:
        """Stop serving and close the API's adapters."""
        if self.stack.api is None:
            return
        since = time.monotonic()
        if await self.within(self.stack.api.stop(), max(self.remaining(), LAST_STEP_S)):
            self.line("api", "stopped", since)
        else:
            self.clean = False
            self.line("api", "abandoned (it did not stop in time)", since)

    def stop_broker(self) -> None:
        """Stop the embedded broker, last: its log (in memory) goes with it."""
        broker = self.stack.broker
        if broker.process is None or broker.exited() is not None:
            return
        since = time.monotonic()
        if self.remaining() < LAST_STEP_S:
            broker.kill()
        else:
            broker.stop(timeout_s=min(5.0, self.remaining()))
        self.line("broker", "stopped", since)


def _behind(ends: dict[TopicPartition, int], committed: dict[TopicPartition, int]) -> int:
    return sum(max(0, end - committed.get(tp, 0)) for tp, end in ends.items())


def _inserted() -> float | None:
    """Executions stored so far by a log sink running in this process (None when it does not)."""
    return REGISTRY.get_sample_value("cc_logsink_inserted_executions_total")


async def stop_stack(stack: "LocalStack", signals: StopSignals) -> bool:
    """Stop everything in order, within the bound; whether the stop was clean."""
    stopper = Stopper(stack, signals)
    why = f"on {signals.reason}" if signals.reason else "after a failed start"
    say(f"\nStopping CodeCourier {why} (Ctrl-C again stops at once)")
    watcher = stack.services.get("broker")
    if watcher is not None and not await watcher.stop(1.0):  # a broker dying now stays dead
        await watcher.kill()
    await stopper.close_intake()
    await stopper.drain()
    await stopper.stop_service("logsink", max(stopper.remaining(), LAST_STEP_S))
    await stopper.stop_api()
    stopper.stop_broker()
    clean = stopper.clean and not signals.forced.is_set()
    took = time.monotonic() - stopper.started
    outcome = "every accepted event is stored" if clean else "NOT a clean stop (see above)"
    say(f"Stopped in {took:.1f} s; {outcome}.")
    log.info("local.stopped", seconds=round(took, 2), clean=clean)
    return clean
