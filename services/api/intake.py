"""Whether the API takes events: closed when `codecourier up` stops, so that everything
accepted before can be stored before the broker goes away."""

import asyncio

from aiohttp import web
from aiohttp.typedefs import Handler

from services.common.errors import Unavailable

INGEST_PATH = "/api/v1/events"


class Intake:
    """The ingest gate: open or closed, and how many ingest requests are in flight."""

    def __init__(self) -> None:
        self.open = True
        self.reason = ""
        self.in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def close(
        self, reason: str = "CodeCourier is shutting down and takes no more events; retry."
    ) -> None:
        """Refuse new events from now on (503 UNAVAILABLE with Retry-After), saying why."""
        self.open, self.reason = False, reason

    def reopen(self) -> None:
        """Take events again."""
        self.open = True

    async def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no ingest request is in flight; False if some still are at `timeout_s`."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    def enter(self) -> None:
        """An ingest request starts (refused when closed)."""
        if not self.open:
            raise Unavailable(self.reason)
        self.in_flight += 1
        self._idle.clear()

    def leave(self) -> None:
        """An ingest request ended (answered or failed)."""
        self.in_flight -= 1
        if not self.in_flight:
            self._idle.set()


def gated(intake: Intake, handler: Handler) -> Handler:
    """The ingest route's handler passing through `intake` (a wrapper on that route alone: a
    middleware would cost every other request a step)."""

    async def gate(request: web.Request) -> web.StreamResponse:
        intake.enter()
        try:
            return await handler(request)
        finally:
            intake.leave()

    return gate
