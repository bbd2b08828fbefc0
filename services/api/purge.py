"""Every hour, delete what the alert engine no longer needs and tombstone its records on the
compacted topics, so that neither the control plane nor the topics keep everything ever made:

- silences over for more than thirty days (until then an expired silence is still listed,
  `?state=expired`); the engine itself forgets a silence a week after it is over
  (`services.alerts.engine.SILENCE_MEMORY_MS`);
- acknowledgements made more than ALERT_RETENTION_DAYS (90) ago, when the `alerts` table no
  longer lists their alert; an alert still firing then would notify again after its cooldown.

Safe with any number of API replicas: a delete names what it read, so of two replicas deleting
one row exactly one enqueues its tombstones.
"""

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import structlog

from schemas import topics
from services.api.deps import Deps
from services.api.outbox import publish_now
from services.common.chschema import ALERT_RETENTION_DAYS
from services.common.clock import now_ms
from services.common.controlplane import OutboxMessage

log = structlog.get_logger(__name__)

DAY_MS = 24 * 3600 * 1000
SILENCE_KEPT_MS = 30 * DAY_MS  # after the silence is over
ACK_KEPT_MS = ALERT_RETENTION_DAYS * DAY_MS  # after the acknowledgement
PERIOD_S = 3600.0
PAGE = 200


async def run_purge(deps: Deps, period_s: float = PERIOD_S) -> None:
    """Purge forever, once a period; errors are logged and the next period tries again."""
    while True:
        try:
            await purge_silences(deps)
            await purge_acks(deps)
        except Exception:
            log.warning("purge.failed", exc_info=True)
        await asyncio.sleep(period_s)


def tombstones(topic: str, name: str, partitions: list[int]) -> list[OutboxMessage]:
    """The records that remove `name` from every partition of a compacted topic."""
    return [OutboxMessage(topic, f"{name}/{p}", p, None) for p in partitions]


async def purge_silences(deps: Deps) -> int:
    """One pass: delete and tombstone every silence over for SILENCE_KEPT_MS; how many."""
    at = now_ms(deps.clock)
    cp = deps.controlplane
    return await _purge(
        deps, topics.SILENCES, "silences",
        lambda: cp.silences_over(at - SILENCE_KEPT_MS, PAGE),
        lambda row, messages: cp.delete_silence(row, messages, at),
        lambda row: row.id,
    )  # fmt: skip


async def purge_acks(deps: Deps) -> int:
    """One pass: delete and tombstone every acknowledgement older than ACK_KEPT_MS; how many."""
    at = now_ms(deps.clock)
    cp = deps.controlplane
    return await _purge(
        deps, topics.ALERT_ACKS, "acknowledgements",
        lambda: cp.acks_before(at - ACK_KEPT_MS, PAGE),
        lambda row, messages: cp.delete_ack(row, messages, at),
        lambda row: row.alert_id,
    )  # fmt: skip


async def _purge(
    deps: Deps,
    topic: str,
    what: str,
    due: Callable[[], Awaitable[Sequence[Any]]],
    delete: Callable[[Any, list[OutboxMessage]], Awaitable[bool]],
    name: Callable[[Any], str],
) -> int:
    """Delete the rows `due` gives, page by page, each with its tombstones on `topic`."""
    partitions = sorted(await deps.producer.partitions_for(topic))
    purged = 0
    while rows := await due():
        for row in rows:
            purged += await delete(row, tombstones(topic, name(row), partitions))
        await publish_now(deps)
        if len(rows) < PAGE:
            break
    if purged:
        log.info("purge.done", what=what, rows=purged)
    return purged
