"""The retry schedule of contract section 6 and the delay tiers that hold retries (pure).

An attempt that may be retried waits `delays[attempt - 1]` seconds plus 0..10% jitter, or the
receiver's `Retry-After` when that is longer, capped at one hour; after `len(delays) + 1`
attempts (6 with the default schedule) the delivery has failed.

Retries wait on delay-tier topics `deliveries.retry.<n>`, one per entry of the schedule, tier n
holding delays of at least `delays[n - 1]`. A tier's consumer reads in log order and holds its
head until it is due, so a record produced into tier n waits at most 10% (the jitter) longer
than its own due time behind an earlier one. A record due later than its tier's delay plus
jitter (a long Retry-After) leaves the tier at that point and moves on ("hops") to the tier
for the time that remains.
"""

import random
from dataclasses import dataclass

from schemas import topics

JITTER = 0.10
MAX_DELAY_S = 3600.0


@dataclass(frozen=True)
class Schedule:
    """Retry delays in seconds (`CC_RETRY_DELAYS`), in the order attempts use them."""

    delays: tuple[float, ...] = (5, 15, 60, 180, 600)

    @property
    def max_attempts(self) -> int:
        """Attempts in all: the first one and one per delay."""
        return len(self.delays) + 1

    def tiers(self) -> list[str]:
        """The delay-tier topics, shortest delay first."""
        return list(topics.retry_tiers(len(self.delays)))

    def tier_delays(self) -> list[float]:
        """Each tier's delay (the schedule's delays, sorted)."""
        return sorted(self.delays)


def tier_number(topic: str) -> int | None:
    """The tier a topic is, or None for any other topic."""
    if not topic.startswith(topics.RETRY_TIER_PREFIX):
        return None
    rest = topic[len(topics.RETRY_TIER_PREFIX) :]
    return int(rest) if rest.isdigit() else None


def next_delay_s(
    schedule: Schedule, attempt: int, retry_after_s: float | None, rng: random.Random
) -> float | None:
    """Seconds until the attempt after `attempt` (1-based), or None when none is left."""
    if attempt >= schedule.max_attempts:
        return None
    base = schedule.delays[attempt - 1] * (1 + rng.uniform(0, JITTER))
    if retry_after_s is not None and retry_after_s > base:
        base = retry_after_s
    return min(base, MAX_DELAY_S)


def tier_for(schedule: Schedule, delay_s: float) -> int:
    """The tier (1-based) a wait of `delay_s` goes to: the longest whose delay fits in it."""
    fitting = [n for n, d in enumerate(schedule.tier_delays(), start=1) if d <= delay_s]
    return fitting[-1] if fitting else 1


def release_at_ms(schedule: Schedule, tier: int, enqueued_ms: int, due_ms: int) -> int:
    """When a tier lets its head go: when due, or when the tier's own wait is over (a hop)."""
    tier_wait_ms = schedule.tier_delays()[tier - 1] * (1 + JITTER) * 1000
    return min(due_ms, enqueued_ms + int(tier_wait_ms))
