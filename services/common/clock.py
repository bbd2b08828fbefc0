"""Time, injected: the one place that reads the wall clock, and the contract's timestamp format."""

import time
from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], float]
"""Seconds since the epoch; tests pass their own."""

system_clock: Clock = time.time


def now_ms(clock: Clock = system_clock) -> int:
    """The current time in whole milliseconds."""
    return int(clock() * 1000)


def iso_ms(epoch_ms: int) -> str:
    """Format epoch milliseconds as the contract's ISO-8601 UTC with milliseconds."""
    moment = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"


def to_ms(moment: datetime) -> int:
    """Epoch milliseconds of an aware datetime."""
    return int(moment.timestamp() * 1000)
