"""Time, injected: the one place that reads the wall clock, and the contract's timestamp format."""

import functools
import time
from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], float]
"""Seconds since the epoch; tests pass their own."""

system_clock: Clock = time.time


def now_ms(clock: Clock = system_clock) -> int:
    """The current time in whole milliseconds."""
    return int(clock() * 1000)


@functools.lru_cache(maxsize=4096)
def _iso_second(epoch_s: int) -> str:
    return datetime.fromtimestamp(epoch_s, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.")


def iso_ms(epoch_ms: int) -> str:
    """Format epoch milliseconds as the contract's ISO-8601 UTC with milliseconds."""
    seconds, millis = divmod(epoch_ms, 1000)
    return f"{_iso_second(seconds)}{millis:03d}Z"  # strftime once per second, not per call


def to_ms(moment: datetime) -> int:
    """Epoch milliseconds of an aware datetime."""
    return int(moment.timestamp() * 1000)
