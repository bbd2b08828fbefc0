"""Supervision for `codecourier up`: a service that crashes is restarted with back-off (logged,
counted in `cc_local_restarts_total`) and never takes the rest of the stack down; child services
run in sessions of their own, so only `up` gets a terminal's Ctrl-C and decides how they stop."""

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import structlog
from prometheus_client import Counter

from services.common.processes import own_session_child

log = structlog.get_logger(__name__)

RESTARTS = Counter(
    "cc_local_restarts", "Services of `codecourier up` restarted after a crash", ["service"]
)

# A job runs one service until its stop event is set, then returns; returning or raising
# before that is a crash.
Job = Callable[[asyncio.Event], Awaitable[None]]


def _cancelling() -> bool:
    """Whether the running task was asked to cancel."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class Crashed(Exception):
    """A service ended although nobody asked it to stop."""


@dataclass
class Backoff:
    """Delays between restarts: doubling from `first_s` to `max_s`, reset after a healthy run."""

    first_s: float = 0.5
    max_s: float = 30.0
    healthy_s: float = 60.0
    current_s: float = 0.0

    def next(self, ran_s: float) -> float:
        """The delay before the next start, after a run that lasted `ran_s`."""
        healthy = ran_s >= self.healthy_s or not self.current_s
        self.current_s = self.first_s if healthy else min(self.current_s * 2, self.max_s)
        return self.current_s


class Service:
    """One service of the stack: runs its job until asked to stop, again after every crash."""

    def __init__(self, name: str, job: Job, backoff: Backoff | None = None) -> None:
        self.name = name
        self.job = job
        self.backoff = backoff or Backoff()
        self.restarts = 0
        self.stopping = asyncio.Event()
        self._run_stop = asyncio.Event()
        self._go = asyncio.Event()  # cleared while held: no run starts
        self._go.set()
        self.idle = asyncio.Event()  # set while held and no run is under way
        self.task: asyncio.Task[None] | None = None
        self._run: asyncio.Future[None] | None = None

    def start(self) -> None:
        """Start supervising (the first run starts at once)."""
        self.task = asyncio.create_task(self._supervise(), name=f"service:{self.name}")

    async def _supervise(self) -> None:
        while not self.stopping.is_set():
            if not self._go.is_set():
                self.idle.set()
                await self._go.wait()
                self.idle.clear()
                continue
            self._run_stop = asyncio.Event()
            started = time.monotonic()
            run = self._run = asyncio.ensure_future(self.job(self._run_stop))
            try:
                await run
                error = "exited"
            except asyncio.CancelledError:
                if not run.cancelled() or _cancelling():  # the supervisor itself: it ends too
                    raise
                error = "abandoned"
            except Exception as exc:
                error = repr(exc)[:300]
            if self.stopping.is_set():
                return
            if self._run_stop.is_set():
                continue  # ended on purpose (held): not a crash
            await self._after_crash(error, time.monotonic() - started)

    async def _after_crash(self, error: str, ran_s: float) -> None:
        delay = self.backoff.next(ran_s)
        self.restarts += 1
        RESTARTS.labels(service=self.name).inc()
        log.error("local.service_crashed", service=self.name, error=error, restart_in_s=delay)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), delay)

    def hold(self) -> None:
        """End the current run, and start none until `release()`; `idle` is set once the run
        has ended."""
        self._go.clear()
        self._run_stop.set()

    def abandon(self) -> bool:
        """Cancel a run that was asked to end and has not (a held service's, hung on a broker
        that went away); whether there was one. A child process is killed with its run."""
        run = self._run
        if run is None or run.done() or not self._run_stop.is_set():
            return False
        run.cancel()
        return True

    def release(self) -> None:
        """Let a held service run again (a fresh run starts at once)."""
        self._go.set()

    async def stop(self, timeout_s: float) -> bool:
        """Ask the service to stop; whether it stopped within `timeout_s`."""
        self.stopping.set()
        self._run_stop.set()
        self._go.set()
        if self.task is None or self.task.done():
            return True
        done, _ = await asyncio.wait([self.task], timeout=max(timeout_s, 0.0))
        return bool(done)

    async def kill(self, timeout_s: float = 1.0) -> None:
        """Cancel the service's run (a child process is killed); a run that still does not end
        within `timeout_s` is left behind (the process is about to exit)."""
        self.stopping.set()
        if self.task is None or self.task.done():
            return
        self.task.cancel()
        await asyncio.wait([self.task], timeout=timeout_s)


class Child:
    """A job running `codecourier <args>` as a child process in a session of its own; it is
    killed if `up` dies, even by SIGKILL (its metrics are not served: the children would contend
    for one CC_METRICS_PORT)."""

    def __init__(
        self, args: list[str], env: Callable[[], Mapping[str, str]], term_timeout_s: float
    ) -> None:
        self.args = args
        self.env = env  # read at every start: it may change between runs
        self.term_timeout_s = term_timeout_s
        self.process: asyncio.subprocess.Process | None = None
        self.killed = False  # whether the last stop had to kill the child

    async def __call__(self, stop: asyncio.Event) -> None:
        """Run the child until `stop` (then SIGTERM it, SIGKILL if it lingers) or its exit."""
        self.process = process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.cli", *self.args,
            env={**os.environ, "CC_METRICS_PORT": "", **self.env()},
            start_new_session=True, preexec_fn=own_session_child(),
        )  # fmt: skip
        waiter = asyncio.create_task(process.wait())
        stopper = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait([waiter, stopper], return_when=asyncio.FIRST_COMPLETED)
            if process.returncode is None:
                await self._terminate(waiter)
        except asyncio.CancelledError:
            self.signal(signal.SIGKILL)
            raise
        finally:
            stopper.cancel()
        if not stop.is_set():
            raise Crashed(f"codecourier {' '.join(self.args)} exited with {process.returncode}")

    async def _terminate(self, waiter: asyncio.Task[int]) -> None:
        self.signal(signal.SIGTERM)
        done, _ = await asyncio.wait([waiter], timeout=self.term_timeout_s)
        self.killed = not done
        if not done:
            log.warning("local.child_killed", args=self.args, after_s=self.term_timeout_s)
            self.signal(signal.SIGKILL)
            await waiter

    def signal(self, sig: int) -> None:
        """Send `sig` to the child's whole process group (its session)."""
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)
