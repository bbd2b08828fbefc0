"""Token buckets with smooth refill: pure arithmetic, plus in-process and Redis stores."""

import math
from typing import Protocol

from msgspec import Struct
from redis.asyncio import Redis
from redis.exceptions import RedisError

from services.common.clock import Clock, system_clock
from services.common.errors import Unavailable


class Bucket(Struct, frozen=True):
    """A bucket's shape: refill per minute and capacity."""

    per_minute: float
    burst: float

    @property
    def per_second(self) -> float:
        """Refill rate in tokens per second."""
        return self.per_minute / 60.0


class Decision(Struct, frozen=True):
    """The outcome of one take, with what the rate-limit headers need."""

    allowed: bool
    limit_per_minute: int
    remaining: int
    reset_at_s: float
    retry_after_s: int


def refill(tokens: float, elapsed_s: float, bucket: Bucket) -> float:
    """Tokens after `elapsed_s` of refill, never above capacity."""
    return min(bucket.burst, tokens + max(0.0, elapsed_s) * bucket.per_second)


def decide(
    tokens_left: float, allowed: bool, now_s: float, bucket: Bucket, cost: float
) -> Decision:
    """Describe a bucket holding `tokens_left` after a take that was (or was not) allowed."""
    whole = math.floor(tokens_left + 1e-9)
    if tokens_left >= bucket.burst:
        reset_at = now_s
    else:
        reset_at = now_s + max(0.0, (whole + 1) - tokens_left) / bucket.per_second
    retry_after = 0
    if not allowed:
        retry_after = max(1, math.ceil((cost - tokens_left) / bucket.per_second))
    return Decision(
        allowed=allowed,
        limit_per_minute=int(bucket.per_minute),
        remaining=max(0, whole),
        reset_at_s=reset_at,
        retry_after_s=retry_after,
    )


def take(
    tokens: float | None, updated_s: float | None, now_s: float, bucket: Bucket, cost: float
) -> tuple[float, Decision]:
    """Refill a bucket (full when new) to `now_s` and try to take `cost` tokens."""
    current = (
        bucket.burst
        if tokens is None or updated_s is None
        else refill(tokens, now_s - updated_s, bucket)
    )
    allowed = current >= cost
    # A negative cost is a refund (tokens given back after a refusal elsewhere), still capped.
    left = min(bucket.burst, current - cost) if allowed else current
    return left, decide(left, allowed, now_s, bucket, cost)


class RateLimiter(Protocol):
    """Where bucket state lives."""

    async def take(self, key: str, bucket: Bucket, cost: float = 1) -> Decision:
        """Take `cost` tokens from the bucket named `key`."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class MemoryRateLimiter:
    """Buckets in this process: right for one API process, wrong for replicas."""

    def __init__(self, clock: Clock = system_clock) -> None:
        self._clock = clock
        self._state: dict[str, tuple[float, float]] = {}

    async def take(self, key: str, bucket: Bucket, cost: float = 1) -> Decision:
        """Take `cost` tokens from the bucket named `key`."""
        now = self._clock()
        tokens, updated = self._state.get(key, (None, None))
        left, decision = take(tokens, updated, now, bucket, cost)
        self._state[key] = (left, now)
        return decision

    async def close(self) -> None:
        """Nothing to release."""


# The same arithmetic as `take`, atomically on the server, on the server's clock so that
# replicas with skewed clocks still share one bucket.
_LUA_TAKE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local s = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(s[1])
local ts = tonumber(s[2])
if tokens == nil or ts == nil then
  tokens = burst
else
  tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
end
local allowed = 0
if tokens >= cost then
  tokens = math.min(burst, tokens - cost)
  allowed = 1
end
local tokens_s = string.format('%.17g', tokens)
local now_s = string.format('%.17g', now)
redis.call('HSET', KEYS[1], 'tokens', tokens_s, 'ts', now_s)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {allowed, tokens_s, now_s}
"""


class RedisRateLimiter:
    """Buckets in Redis, one atomic script per take, shared by every API replica."""

    def __init__(self, url: str, prefix: str = "cc:rl:") -> None:
        self._redis: Redis = Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._script = self._redis.register_script(_LUA_TAKE)
        self._prefix = prefix

    async def take(self, key: str, bucket: Bucket, cost: float = 1) -> Decision:
        """Take `cost` tokens from the bucket named `key`."""
        try:
            allowed, tokens, now = await self._script(
                keys=[self._prefix + key], args=[bucket.per_second, bucket.burst, cost]
            )
        except (TimeoutError, RedisError, OSError) as exc:
            raise Unavailable(f"rate-limit store unreachable: {type(exc).__name__}") from exc
        return decide(float(tokens), bool(int(allowed)), float(now), bucket, cost)

    async def ping(self) -> None:
        """Raise Unavailable when Redis cannot answer."""
        try:
            await self._redis.ping()
        except (RedisError, OSError) as exc:
            raise Unavailable(f"redis unreachable: {type(exc).__name__}") from exc

    async def close(self) -> None:
        """Close the connection pool."""
        await self._redis.aclose()
