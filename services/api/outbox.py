"""The outbox relay: publishes committed control-plane changes to Kafka, in commit order.

At least once: a crash between the broker's ack and `mark_published` republishes a message,
which consumers absorb (subscription records carry a version; the topic is compacted).
"""

import asyncio

import structlog

from services.api.deps import Deps
from services.common.clock import now_ms

log = structlog.get_logger(__name__)

BATCH = 500


async def relay_once(deps: Deps) -> int:
    """Publish one batch of pending messages; return how many."""
    pending = await deps.controlplane.pending_outbox(BATCH)
    if not pending:
        return 0
    futures = [
        await deps.producer.send(m.topic, m.value, key=m.key.encode(), partition=m.partition)
        for m in pending
    ]
    await asyncio.gather(*futures)
    await deps.controlplane.mark_published([m.id for m in pending], now_ms(deps.clock))
    return len(pending)


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
