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


# A logs page formats two times per item: strftime once per second (a plain dict, cleared when
# full, is cheaper than lru_cache's wrapper) and the milliseconds from a table, not per call.
_ISO_SECONDS: dict[int, str] = {}
_ISO_SECONDS_MAX = 4096
_ISO_MILLIS = [f"{millis:03d}Z" for millis in range(1000)]


def iso_ms(epoch_ms: int) -> str:
    """Format epoch milliseconds as the contract's ISO-8601 UTC with milliseconds."""
    seconds, millis = divmod(epoch_ms, 1000)
    prefix = _ISO_SECONDS.get(seconds)
    if prefix is None:
        if len(_ISO_SECONDS) >= _ISO_SECONDS_MAX:
            _ISO_SECONDS.clear()
        prefix = datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        _ISO_SECONDS[seconds] = prefix
    return prefix + _ISO_MILLIS[millis]


def to_ms(moment: datetime) -> int:
    """Epoch milliseconds of an aware datetime."""
    return int(moment.timestamp() * 1000)
