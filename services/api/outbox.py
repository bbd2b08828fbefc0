"""The outbox relay: publishes committed control-plane changes to Kafka, in commit order.

At least once: a crash between the broker's ack and `mark_published` republishes a message,
which consumers absorb (subscription records carry a version; the topic is compacted).
A message the broker can never take (larger than its limit, not encodable) is set aside on
`subscriptions.dlq` with the error, so that it cannot hold up the messages behind it.

A subscription, silence or acknowledgement record is first written as a marker to the same
partition of `executions`, and the compacted record then carries the marker's offset
(`markerOffset`): the alert engine applies a subscription, a silence's version or an
acknowledgement to the executions after its marker, an order the log itself gives. The API
publishes a change this way before answering it (`publish_now`), so an execution sent after the
answer always follows the marker; the relay loop is the fallback when that fails.
"""

import asyncio
from typing import Any

import msgspec
import structlog
from prometheus_client import Counter

from schemas import topics
from schemas.alerts import AckRecord
from schemas.destinations import RecordDecoder
from schemas.notifications import SubscriptionRecord
from schemas.silences import SilenceRecord
from services.api.deps import Deps
from services.common.clock import now_ms
from services.common.controlplane import OutboxMessage
from services.common.kafka import dead_letter_headers, describe_error
from services.common.kafkaclients import is_refused

log = structlog.get_logger(__name__)

BATCH = 500
PUBLISH_NOW_TIMEOUT_S = 10.0
PUBLISH_NOW_BATCHES = 4
DEAD_LETTERS = Counter("cc_outbox_dead_letters", "Outbox messages sent to subscriptions.dlq")

# The compacted topics whose records are also markers on `executions`, with their decoders.
MARKED: dict[
    str, RecordDecoder[SubscriptionRecord] | RecordDecoder[SilenceRecord] | RecordDecoder[AckRecord]
] = {
    topics.SUBSCRIPTIONS: RecordDecoder(SubscriptionRecord),
    topics.SILENCES: RecordDecoder(SilenceRecord),
    topics.ALERT_ACKS: RecordDecoder(AckRecord),
}
_json = msgspec.json.Encoder(decimal_format="number")


async def _send(
    deps: Deps, m: OutboxMessage, topic: str | None = None
) -> "asyncio.Future[Any] | Exception":
    """Hand a message to the producer (on its own topic unless `topic` says otherwise): its
    delivery future, or why the message was refused."""
    try:
        future: asyncio.Future[Any] = await deps.producer.send(
            topic or m.topic, m.value, key=m.key.encode(), partition=m.partition
        )
    except Exception as exc:
        if not is_refused(exc):
            raise
        return exc
    return future


async def _outcome(sent: "asyncio.Future[Any] | Exception") -> Any:
    """The broker's record metadata once it has a message, or the exception that says why it
    refused it; its own failures are raised."""
    if isinstance(sent, Exception):
        return sent
    try:
        return await sent
    except Exception as exc:
        if not is_refused(exc):
            raise
        return exc


async def relay_once(deps: Deps) -> int:
    """Publish one batch of pending messages; return how many."""
    async with deps.outbox_lock:  # the request path and the loop never publish one twice
        pending = await deps.controlplane.pending_outbox(BATCH)
        if not pending:
            return 0
        marked = await with_markers(deps, pending)
        sent = [await _send(deps, m) for m in marked]
        for m, future in zip(marked, sent, strict=True):
            outcome = await _outcome(future)
            if isinstance(outcome, Exception):
                await _dead_letter(deps, m, outcome)
        await deps.controlplane.mark_published([m.id for m in pending], now_ms(deps.clock))
        return len(pending)


async def with_markers(deps: Deps, pending: list[OutboxMessage]) -> list[OutboxMessage]:
    """Write a marker on `executions` for every record of a topic in `MARKED`; the records
    with the offsets of their markers (a record whose marker the broker refused stays as it
    is; tombstones have none)."""
    records = [m for m in pending if m.topic in MARKED and m.value is not None]
    sent = [await _send(deps, m, topics.EXECUTIONS) for m in records]
    offsets: dict[int, int] = {}
    for m, future in zip(records, sent, strict=True):
        outcome = await _outcome(future)
        if not isinstance(outcome, Exception):
            offsets[m.id] = outcome.offset
    return [_marked(m, offsets[m.id]) if m.id in offsets else m for m in pending]


def _marked(message: OutboxMessage, offset: int) -> OutboxMessage:
    try:
        record = MARKED[message.topic].decode(message.value or b"")
    except (msgspec.DecodeError, msgspec.ValidationError):  # not a record: relayed unmarked
        return message
    marked = msgspec.structs.replace(record, markerOffset=offset)
    return msgspec.structs.replace(message, value=_json.encode(marked))


async def publish_now(deps: Deps) -> None:
    """Publish pending changes before a request is answered; failures are left to the loop."""
    try:
        async with asyncio.timeout(PUBLISH_NOW_TIMEOUT_S):
            for _ in range(PUBLISH_NOW_BATCHES):
                if await relay_once(deps) < BATCH:
                    return
    except Exception:  # the change is committed: answer it; the relay loop publishes it later
        log.warning("outbox.publish_deferred", exc_info=True)


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
        if not is_refused(exc):
            raise
        await deps.producer.send_and_wait(topics.SUBSCRIPTIONS_DLQ, None, key=key, headers=headers)


async def publish_all(deps: Deps) -> None:
    """Publish every pending change now (a broker's failure is raised)."""
    while await relay_once(deps) == BATCH:
        pass


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
