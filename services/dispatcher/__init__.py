"""The dispatcher: delivers `notifications` by webhook, email and Slack, with durable retries."""
