"""Token buckets in memory and in the machine's Redis: one contract, and sharing across clients."""

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from services.common.ratelimit import Bucket, MemoryRateLimiter, RateLimiter, RedisRateLimiter

FREE = Bucket(per_minute=10, burst=20)
FAST = Bucket(per_minute=600, burst=5)  # one token every 100 ms keeps refill tests short


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def limiter(request: pytest.FixtureRequest) -> AsyncIterator[RateLimiter]:
    store: RateLimiter
    if request.param == "memory":
        store = MemoryRateLimiter()
    else:
        store = RedisRateLimiter(request.getfixturevalue("redis_url"))
    yield store
    await store.close()


async def test_twenty_first_request_is_refused(limiter: RateLimiter) -> None:
    outcomes = [(await limiter.take("api:p1", FREE)).allowed for _ in range(21)]
    assert outcomes == [True] * 20 + [False]
    refused = await limiter.take("api:p1", FREE)
    assert refused.retry_after_s in (5, 6)
    assert refused.remaining == 0


async def test_buckets_are_per_key(limiter: RateLimiter) -> None:
    for _ in range(20):
        await limiter.take("api:p1", FREE)
    assert (await limiter.take("api:p2", FREE)).allowed


async def test_refill_is_smooth(limiter: RateLimiter) -> None:
    for _ in range(5):
        assert (await limiter.take("api:fast", FAST)).allowed
    assert not (await limiter.take("api:fast", FAST)).allowed
    await asyncio.sleep(0.25)
    again = await limiter.take("api:fast", FAST)
    assert again.allowed
    assert again.remaining == 1  # ~2.5 tokens came back, one was just taken


async def test_remaining_counts_down_and_reset_is_ahead(limiter: RateLimiter) -> None:
    before = time.time()
    remaining = [(await limiter.take("api:hdr", FREE)).remaining for _ in range(3)]
    decision = await limiter.take("api:hdr", FREE)
    assert remaining == [19, 18, 17]
    assert before < decision.reset_at_s <= before + 6.5


@pytest.mark.redis
async def test_two_redis_clients_share_one_bucket(redis_url: str) -> None:
    one, two = RedisRateLimiter(redis_url), RedisRateLimiter(redis_url)
    try:
        results = await asyncio.gather(
            *(client.take("api:shared", FREE) for client in [one, two] * 15)
        )
        assert sum(r.allowed for r in results) == 20
    finally:
        await one.close()
        await two.close()


async def test_redis_down_is_unavailable_not_a_crash() -> None:
    from services.common.errors import Unavailable

    dead = RedisRateLimiter("redis://127.0.0.1:1/0")
    with pytest.raises(Unavailable):
        await dead.take("api:x", FREE)
    await dead.close()


async def test_refunds_are_capped_at_the_burst(limiter: RateLimiter) -> None:
    for _ in range(3):
        await limiter.take("api:refund", FREE)
    back = await limiter.take("api:refund", FREE, -2)
    assert back.remaining == 19
    full = await limiter.take("api:refund", FREE, -50)
    assert full.remaining == 20
