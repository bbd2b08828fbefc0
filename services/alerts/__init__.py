"""The alert engine: rule evaluation over executions, ticks and subscriptions."""
