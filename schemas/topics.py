"""Kafka topic names: the only place they are spelled."""

EXECUTIONS = "executions"
TICKS = "ticks"
SUBSCRIPTIONS = "subscriptions"
SILENCES = "silences"
ALERT_ACKS = "alert-acks"
ALERT_EVENTS = "alert-events"
NOTIFICATIONS = "notifications"
DELIVERIES_DLQ = "deliveries.dlq"
DELIVERY_LOG = "delivery-log"
COMMANDS = "commands"
EXECUTIONS_DLQ = "executions.dlq"
DELIVERY_LOG_DLQ = "delivery-log.dlq"
SUBSCRIPTIONS_DLQ = "subscriptions.dlq"
RETRY_TIERS_DLQ = "deliveries.retry.dlq"  # not a tier: `retry_tier` numbers are digits
ALERTS_DLQ = "alerts.dlq"  # any record the alert engine could not handle, from any of its topics
# Records of `alert-events` and `alert-acks` the log sink could not store.
ALERT_EVENTS_DLQ = "alert-events.dlq"
RETRY_TIER_PREFIX = "deliveries.retry."

# Topics keyed by workflow id must share a partition count so that the alert engine can join them.
# Silences and acknowledgements, like subscriptions, are broadcast to every partition (keys
# `<id>/<partition>`).
CO_PARTITIONED = (EXECUTIONS, TICKS, SUBSCRIPTIONS, SILENCES, ALERT_ACKS)
COMPACTED = (SUBSCRIPTIONS, SILENCES, ALERT_ACKS)
ALL = (
    EXECUTIONS,
    TICKS,
    SUBSCRIPTIONS,
    SILENCES,
    ALERT_ACKS,
    NOTIFICATIONS,
    ALERT_EVENTS,
    DELIVERIES_DLQ,
    DELIVERY_LOG,
    COMMANDS,
    EXECUTIONS_DLQ,
    DELIVERY_LOG_DLQ,
    SUBSCRIPTIONS_DLQ,
    RETRY_TIERS_DLQ,
    ALERTS_DLQ,
    ALERT_EVENTS_DLQ,
)


def retry_tier(n: int) -> str:
    """Delay tier `n` (1-based) of the dispatcher's retries."""
    return f"{RETRY_TIER_PREFIX}{n}"


def retry_tiers(count: int) -> tuple[str, ...]:
    """The delay tiers of a retry schedule with `count` delays."""
    return tuple(retry_tier(n) for n in range(1, count + 1))
