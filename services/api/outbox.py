"""The outbox relay: publishes committed control-plane changes to Kafka, in commit order.

At least once: a crash between the broker's ack and `mark_published` republishes a message,
which consumers absorb (subscription records carry a version; the topic is compacted).
A message the broker can never take (larger than its limit, not encodable) is set aside on
`subscriptions.dlq` with the error, so that it cannot hold up the messages behind it.
"""

import asyncio
from typing import Any

import structlog
from aiokafka.errors import KafkaError
from prometheus_client import Counter

from schemas import topics
from services.api.deps import Deps
from services.common.clock import now_ms
from services.common.controlplane import OutboxMessage
from services.common.kafka import REFUSED_RECORD_ERRORS, dead_letter_headers, describe_error

log = structlog.get_logger(__name__)

BATCH = 500
DEAD_LETTERS = Counter("cc_outbox_dead_letters", "Outbox messages sent to subscriptions.dlq")


def refused(error: BaseException) -> bool:
    """Whether producing a message failed because of the message itself (a broker that is
    down, without a leader or slow is retried with the whole batch)."""
    return isinstance(error, REFUSED_RECORD_ERRORS) or not isinstance(error, KafkaError)


async def _send(deps: Deps, m: OutboxMessage) -> "asyncio.Future[Any] | Exception":
    """Hand a message to the producer: its delivery future, or why the message was refused."""
    try:
        future: asyncio.Future[Any] = await deps.producer.send(
            m.topic, m.value, key=m.key.encode(), partition=m.partition
        )
    except Exception as exc:
        if not refused(exc):
            raise
        return exc
    return future


async def _refusal(sent: "asyncio.Future[Any] | Exception") -> Exception | None:
    """Why the broker refused a message, None once it has it; its own failures are raised."""
    if isinstance(sent, Exception):
        return sent
    try:
        await sent
    except Exception as exc:
        if not refused(exc):
            raise
        return exc
    return None


async def relay_once(deps: Deps) -> int:
    """Publish one batch of pending messages; return how many."""
    pending = await deps.controlplane.pending_outbox(BATCH)
    if not pending:
        return 0
    sent = [await _send(deps, m) for m in pending]
    for m, future in zip(pending, sent, strict=True):
        error = await _refusal(future)
        if error is not None:
            await _dead_letter(deps, m, error)
    await deps.controlplane.mark_published([m.id for m in pending], now_ms(deps.clock))
    return len(pending)


async def _dead_letter(deps: Deps, m: OutboxMessage, error: Exception) -> None:
    """Put a message the broker refused on `subscriptions.dlq`, with the error; without its
    value when the value is what the broker refused."""
    DEAD_LETTERS.inc()
    log.warning(
        "outbox.dead_letter", id=m.id, topic=m.topic, key=m.key, error=describe_error(error)
    )
    headers = [*dead_letter_headers(m.topic, m.partition, None, error), ("outbox-id", b"%d" % m.id)]
    key = m.key.encode(errors="replace")
    try:
        await deps.producer.send_and_wait(
            topics.SUBSCRIPTIONS_DLQ, m.value, key=key, headers=headers
        )
    except Exception as exc:
        if not refused(exc):
            raise
        await deps.producer.send_and_wait(topics.SUBSCRIPTIONS_DLQ, None, key=key, headers=headers)


async def run_relay(deps: Deps, idle_s: float = 0.5) -> None:
    """Relay forever; errors are logged and the batch retried."""
    while True:
        try:
            if await relay_once(deps) == BATCH:
                continue
        except Exception:
            log.warning("outbox.relay_failed", exc_info=True)
            await asyncio.sleep(1.0)
        await asyncio.sleep(idle_s)
