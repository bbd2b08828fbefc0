"""One attempt of a notification through its channel, with its subscription as it is now."""

import functools
import time
from collections.abc import Awaitable, Callable, Mapping

import structlog
from prometheus_client import Histogram

from schemas.notifications import NotificationRecord
from services.common.clock import Clock, now_ms, system_clock
from services.dispatcher.channels import discord, email, pagerduty, slack, teams, webhook
from services.dispatcher.channels.base import Context, Result, Secrets
from services.dispatcher.current import Subscriptions
from services.dispatcher.decision import Attempted
from services.dispatcher.records import open_secrets

log = structlog.get_logger(__name__)

ATTEMPT_SECONDS = Histogram("cc_dispatcher_attempt_seconds", "Attempt duration", ["channel"])
attempt_seconds_of = functools.cache(ATTEMPT_SECONDS.labels)  # a child per channel, looked up once

Send = Callable[[NotificationRecord, Secrets, Context], Awaitable[Result]]
CHANNELS: dict[str, Send] = {
    "webhook": webhook.send,
    "email": email.send,
    "slack": slack.send,
    "pagerduty": pagerduty.send,
    "teams": teams.send,
    "discord": discord.send,
}
OnGone = Callable[[NotificationRecord, str], Awaitable[None]]


class Sender:
    """Makes attempts: opens the secrets, sends through the channel, reports a 410."""

    def __init__(
        self,
        context: Context,
        key: bytes,
        subscriptions: Subscriptions,
        channels: Mapping[str, Send] = CHANNELS,
        on_gone: OnGone | None = None,
        clock: Clock = system_clock,
    ) -> None:
        self.context = context
        self.key = key
        self.subscriptions = subscriptions
        self.channels = channels
        self.on_gone = on_gone
        self.clock = clock

    async def attempt(self, record: NotificationRecord) -> Attempted:
        """Make one attempt of `record`, as its subscription is now."""
        refusal = self.subscriptions.refusal(record)
        record = self.subscriptions.current(record)
        started_ms = now_ms(self.clock)
        started = time.perf_counter()
        if refusal is not None:
            result = Result(delivered=False, error=refusal)
        else:
            result = await self._send(record, started_ms)
        duration_ms = int((time.perf_counter() - started) * 1000)
        attempt_seconds_of(record.notificationType).observe(duration_ms / 1000)
        if result.gone and self.on_gone is not None:
            reason = f"The receiver answered 410 Gone at attempt {record.attempt}."
            try:
                await self.on_gone(record, reason)
            except Exception:  # the attempt is made: it is recorded whatever became of this
                log.exception("dispatcher.disable_failed", subscription=record.subscriptionId)
        return Attempted(record, result, started_ms, duration_ms)

    async def _send(self, record: NotificationRecord, at_ms: int) -> Result:
        try:
            secrets = open_secrets(record, self.key, at_ms)
        except ValueError:
            return Result(delivered=False, error="The subscription's secret could not be opened.")
        send = self.channels.get(record.notificationType)
        if send is None:
            return Result(delivered=False, error=f"Unknown channel {record.notificationType}.")
        try:
            return await send(record, secrets, self.context)
        except Exception as exc:  # a channel bug must not stall the partition: retry it
            log.exception("dispatcher.channel_error", delivery=record.deliveryId)
            error = f"Internal error: {type(exc).__name__}"
            return Result(delivered=False, retryable=True, error=error)
