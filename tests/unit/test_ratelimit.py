"""The token bucket arithmetic: burst, smooth refill, headers, Retry-After."""

import math

from hypothesis import given
from hypothesis import strategies as st

from services.common.ratelimit import Bucket, take

FREE = Bucket(per_minute=10, burst=20)


def drain(bucket: Bucket, count: int, now: float) -> tuple[float, list[bool]]:
    tokens, updated, outcomes = None, None, []
    for _ in range(count):
        tokens, decision = take(tokens, updated, now, bucket, 1)
        updated = now
        outcomes.append(decision.allowed)
    assert tokens is not None
    return tokens, outcomes


def test_free_plan_allows_a_burst_of_20_and_refuses_the_21st() -> None:
    _, outcomes = drain(FREE, 21, now=1000.0)
    assert outcomes == [True] * 20 + [False]


def test_refused_take_reports_retry_after_in_whole_seconds() -> None:
    tokens, _ = drain(FREE, 20, now=1000.0)
    _, decision = take(tokens, 1000.0, 1000.0, FREE, 1)
    assert not decision.allowed
    assert decision.retry_after_s == 6  # 10 per minute = one token every 6 s
    assert decision.remaining == 0


def test_refill_is_smooth_not_stepped_per_minute() -> None:
    tokens, _ = drain(FREE, 20, now=1000.0)
    _, early = take(tokens, 1000.0, 1005.9, FREE, 1)
    _, later = take(tokens, 1000.0, 1006.0, FREE, 1)
    assert not early.allowed
    assert later.allowed
    assert early.retry_after_s == 1


def test_refill_never_exceeds_the_burst() -> None:
    left, decision = take(0.0, 0.0, 10_000.0, FREE, 1)
    assert left == 19
    assert decision.remaining == 19


def test_headers_describe_the_bucket_after_the_take() -> None:
    _, decision = take(None, None, 1000.0, FREE, 1)
    assert decision.limit_per_minute == 10
    assert decision.remaining == 19
    # 19 whole tokens left: the 20th arrives after 6 s of refill.
    assert math.isclose(decision.reset_at_s, 1006.0)
    _, full = take(None, None, 1000.0, FREE, 0)
    assert full.reset_at_s == 1000.0


def test_cost_counts_several_tokens_for_batch_ingest() -> None:
    bucket = Bucket(per_minute=1000, burst=2000)
    left, ok = take(None, None, 0.0, bucket, 1500)
    _, refused = take(left, 0.0, 0.0, bucket, 600)
    assert ok.allowed
    assert not refused.allowed
    assert refused.retry_after_s == math.ceil(100 / (1000 / 60))


@given(
    st.lists(st.tuples(st.floats(0, 30), st.integers(1, 3)), min_size=1, max_size=200),
    st.integers(1, 600),
    st.integers(1, 100),
)
def test_never_admits_more_than_burst_plus_refill(
    steps: list[tuple[float, int]], per_minute: int, burst: int
) -> None:
    bucket = Bucket(per_minute=per_minute, burst=burst)
    tokens, updated, now, admitted = None, None, 0.0, 0
    for gap, cost in steps:
        now += gap
        tokens, decision = take(tokens, updated, now, bucket, cost)
        updated = now
        assert 0 <= tokens <= burst
        assert 0 <= decision.remaining <= burst
        admitted += cost if decision.allowed else 0
        if not decision.allowed:
            assert decision.retry_after_s >= 1
    assert admitted <= burst + now * bucket.per_second + 1e-6


def test_a_negative_cost_refunds_but_never_beyond_the_burst() -> None:
    left, _ = take(None, None, 0.0, FREE, 15)
    assert left == 5
    refunded, decision = take(left, 0.0, 0.0, FREE, -10)
    assert decision.allowed and refunded == 15
    capped, _ = take(refunded, 0.0, 0.0, FREE, -100)
    assert capped == FREE.burst
