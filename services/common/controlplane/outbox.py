"""The transactional outbox: records written with the change they announce, published later."""

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import Delete, Update

from services.common.controlplane.base import Queries
from services.common.controlplane.records import OutboxMessage
from services.common.controlplane.schema import outbox


class OutboxQueries(Queries):
    """The control plane's outbox queries, for the relay."""

    async def pending_outbox(self, limit: int) -> list[OutboxMessage]:
        """The oldest unpublished outbox messages, in commit order."""
        query = (
            sa.select(outbox)
            .where(outbox.c.published_at_ms.is_(None))
            .order_by(outbox.c.id)
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            OutboxMessage(topic=r.topic, key=r.key, partition=r.partition, value=r.value, id=r.id)
            for r in rows
        ]

    async def republish_outbox(self) -> int:
        """Mark every outbox message unpublished, so that the relay rebuilds the compacted topics
        on a broker that lost them (the embedded one keeps its log in memory); how many."""
        async with self.writing() as conn:
            result = await conn.execute(
                outbox.update()
                .where(outbox.c.published_at_ms.is_not(None))
                .values(published_at_ms=None)
            )
        return int(result.rowcount or 0)

    async def mark_published(self, ids: list[int], now_ms: int) -> None:
        """Record that outbox messages reached the broker."""
        if ids:
            async with self.writing() as conn:
                await conn.execute(
                    outbox.update().where(outbox.c.id.in_(ids)).values(published_at_ms=now_ms)
                )


async def enqueue(conn: AsyncConnection, messages: list[OutboxMessage], now_ms: int) -> None:
    """Add outbox messages in the caller's transaction, the one that makes their change."""
    if messages:
        await conn.execute(outbox.insert(), [
            {"topic": m.topic, "key": m.key, "partition": m.partition, "value": m.value,
             "created_at_ms": now_ms} for m in messages
        ])  # fmt: skip


async def changed(
    queries: Queries, statement: Update | Delete, messages: list[OutboxMessage], now_ms: int
) -> bool:
    """Run an update or delete and, when it changed a row, enqueue `messages` in the same
    transaction; whether it changed one."""
    async with queries.writing() as conn:
        if not (await conn.execute(statement)).rowcount:
            return False
        await enqueue(conn, messages, now_ms)
    return True
