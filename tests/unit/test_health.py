"""Endpoint health from a subscription's summary, and the auto-disable rule (pure)."""

from services.api.health import Summary, disabled_reason, health_of, should_disable
from services.common.clock import iso_ms

NOW = 1_800_000_000_000
HOUR = 3_600_000


def summary(
    latest: str = "failed",
    success: int = 0,
    failure: int = NOW - HOUR,
    since: int = NOW - 3 * HOUR,
    streak: int = 10,
    delivered_24h: int = 0,
    failed_24h: int = 10,
) -> Summary:
    return Summary("ntf_1", latest, success, failure, since, streak, delivered_24h, failed_24h)


def test_no_ended_delivery_is_healthy_without_figures() -> None:
    assert health_of(None, disabled=False).status == "healthy"
    assert health_of(None, disabled=True).status == "disabled"


def test_failing_when_the_latest_ended_delivery_failed() -> None:
    health = health_of(summary(success=NOW - 5 * HOUR, delivered_24h=1), disabled=False)
    assert health.status == "failing"
    assert health.failingSince == iso_ms(NOW - 3 * HOUR)
    assert health.lastSuccessAt == iso_ms(NOW - 5 * HOUR)
    assert health.lastFailureAt == iso_ms(NOW - HOUR)
    assert health.successRate24h == round(1 / 11, 4)


def test_healthy_after_a_success_shows_no_failing_since() -> None:
    health = health_of(
        summary(latest="delivered", success=NOW, streak=0, delivered_24h=3, failed_24h=1),
        disabled=False,
    )
    assert health.status == "healthy" and health.failingSince is None
    assert health.successRate24h == 0.75


def test_no_delivery_in_24_hours_has_no_rate_and_never_a_success_has_no_time() -> None:
    health = health_of(summary(delivered_24h=0, failed_24h=0), disabled=False)
    assert health.successRate24h is None and health.lastSuccessAt is None


def test_disabled_wins_over_failing() -> None:
    assert health_of(summary(), disabled=True).status == "disabled"


def test_disable_after_the_span_with_ten_failures() -> None:
    assert should_disable(summary(since=NOW - 2 * HOUR), NOW, hours=2.0)
    assert should_disable(summary(since=NOW - 3 * HOUR), NOW, hours=2.0)


def test_not_disabled_within_the_span_with_nine_or_after_a_success() -> None:
    assert not should_disable(summary(since=NOW - 2 * HOUR + 1), NOW, hours=2.0)
    assert not should_disable(summary(streak=9), NOW, hours=2.0)
    assert not should_disable(summary(latest="delivered"), NOW, hours=2.0)
    assert not should_disable(summary(since=0), NOW, hours=2.0)
    assert not should_disable(None, NOW, hours=2.0)


def test_scaled_down_hours() -> None:
    assert should_disable(summary(since=NOW - 4000), NOW, hours=0.001)
    assert not should_disable(summary(since=NOW - 3000), NOW, hours=0.001)


def test_the_reason_says_how_many_and_since_when() -> None:
    reason = disabled_reason(summary(streak=12), NOW)
    assert "12 deliveries all failed" in reason
    assert iso_ms(NOW - 3 * HOUR) in reason and iso_ms(NOW) in reason
