"""Every hour, delete the silences over for more than thirty days and tombstone their records on
the compacted `silences` topic, so that neither the control plane nor the topic keeps every
silence ever made. Until then an expired silence is still listed (`?state=expired`).

Safe with any number of API replicas: a delete names the version it read, so of two replicas
deleting one silence exactly one enqueues its tombstones. The alert engine forgets a silence a
week after it is over, whatever the topic holds (`services.alerts.engine.SILENCE_MEMORY_MS`).
"""

import asyncio

import structlog

from schemas import topics
from services.api.deps import Deps
from services.api.outbox import publish_now
from services.common.clock import now_ms
from services.common.controlplane import OutboxMessage, SilenceRow

log = structlog.get_logger(__name__)

KEPT_AFTER_OVER_MS = 30 * 24 * 3600 * 1000
PERIOD_S = 3600.0
PAGE = 200


async def run_silence_purge(deps: Deps, period_s: float = PERIOD_S) -> None:
    """Purge forever, once a period; errors are logged and the next period tries again."""
    while True:
        try:
            await purge_silences(deps)
        except Exception:
            log.warning("silences.purge_failed", exc_info=True)
        await asyncio.sleep(period_s)


def tombstones(row: SilenceRow, partitions: list[int]) -> list[OutboxMessage]:
    """The records that remove a silence from every partition of its compacted topic."""
    return [OutboxMessage(topics.SILENCES, f"{row.id}/{p}", p, None) for p in partitions]


async def purge_silences(deps: Deps) -> int:
    """One pass: delete and tombstone every silence over for KEPT_AFTER_OVER_MS; how many."""
    at = now_ms(deps.clock)
    partitions = sorted(await deps.producer.partitions_for(topics.SILENCES))
    purged = 0
    while rows := await deps.controlplane.silences_over(at - KEPT_AFTER_OVER_MS, PAGE):
        for row in rows:
            purged += await deps.controlplane.delete_silence(row, tombstones(row, partitions), at)
        await publish_now(deps)
        if len(rows) < PAGE:
            break
    if purged:
        log.info("silences.purged", silences=purged)
    return purged
