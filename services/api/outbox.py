"""The outbox relay: publishes committed control-plane changes to Kafka, in commit order.

At least once: a crash between the broker's ack and `mark_published` republishes a message,
which consumers absorb (subscription records carry a version; the topic is compacted).

A subscription record is first written as a marker to the same partition of `executions`,
and the compacted record then carries the marker's offset (`markerOffset`): the alert engine
applies a subscription to the executions after its marker, an order the log itself gives.
The API publishes a change this way before answering it (`publish_now`), so an execution sent
after the answer always follows the marker; the relay loop is the fallback when that fails.
"""

import asyncio

import msgspec
import structlog
from aiokafka import AIOKafkaProducer

from schemas import topics
from schemas.notifications import SubscriptionRecord
from services.api.deps import Deps
from services.common.clock import now_ms
from services.common.controlplane import OutboxMessage

log = structlog.get_logger(__name__)

BATCH = 500
PUBLISH_NOW_TIMEOUT_S = 10.0
PUBLISH_NOW_BATCHES = 4

_subscription = msgspec.json.Decoder(SubscriptionRecord)
_json = msgspec.json.Encoder(decimal_format="number")


async def relay_once(deps: Deps) -> int:
    """Publish one batch of pending messages; return how many."""
    async with deps.outbox_lock:  # the request path and the loop never publish one twice
        pending = await deps.controlplane.pending_outbox(BATCH)
        if not pending:
            return 0
        marked = await with_markers(deps.producer, pending)
        futures = [
            await deps.producer.send(m.topic, m.value, key=m.key.encode(), partition=m.partition)
            for m in marked
        ]
        await asyncio.gather(*futures)
        await deps.controlplane.mark_published([m.id for m in pending], now_ms(deps.clock))
        return len(pending)


async def with_markers(
    producer: AIOKafkaProducer, pending: list[OutboxMessage]
) -> list[OutboxMessage]:
    """Write a marker on `executions` for every subscription record; the records with the
    offsets of their markers."""
    records = [m for m in pending if m.topic == topics.SUBSCRIPTIONS and m.value is not None]
    futures = [
        await producer.send(topics.EXECUTIONS, m.value, key=m.key.encode(), partition=m.partition)
        for m in records
    ]
    metas = await asyncio.gather(*futures)
    offsets = {m.id: meta.offset for m, meta in zip(records, metas, strict=True)}
    return [_marked(m, offsets[m.id]) if m.id in offsets else m for m in pending]


def _marked(message: OutboxMessage, offset: int) -> OutboxMessage:
    record = _subscription.decode(message.value or b"")
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
