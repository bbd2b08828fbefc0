"""Kafka topic names: the only place they are spelled."""

EXECUTIONS = "executions"
TICKS = "ticks"
SUBSCRIPTIONS = "subscriptions"
NOTIFICATIONS = "notifications"
DELIVERIES_DLQ = "deliveries.dlq"
DELIVERY_LOG = "delivery-log"
COMMANDS = "commands"
EXECUTIONS_DLQ = "executions.dlq"
RETRY_TIER_PREFIX = "deliveries.retry."

# Topics keyed by workflow id must share a partition count so that the alert engine can join them.
CO_PARTITIONED = (EXECUTIONS, TICKS, SUBSCRIPTIONS)
COMPACTED = (SUBSCRIPTIONS,)
ALL = (
    EXECUTIONS,
    TICKS,
    SUBSCRIPTIONS,
    NOTIFICATIONS,
    DELIVERIES_DLQ,
    DELIVERY_LOG,
    COMMANDS,
    EXECUTIONS_DLQ,
)
