"""Notification subscriptions in the control plane, each change written with its outbox messages."""

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.controlplane.base import Queries
from services.common.controlplane.outbox import changed, enqueue
from services.common.controlplane.projects import lock_project
from services.common.controlplane.records import OutboxMessage, SubscriptionRow, subscription_of
from services.common.controlplane.schema import subscriptions


class SubscriptionQueries(Queries):
    """The control plane's subscription queries."""

    async def count_subscriptions(self, project_id: str, notification_type: str) -> int:
        """How many subscriptions of a type a project has."""
        async with self.engine.connect() as conn:
            return await _count_subscriptions(conn, project_id, notification_type)

    async def create_subscription(
        self, row: SubscriptionRow, messages: list[OutboxMessage], max_per_type: int
    ) -> bool:
        """Insert a subscription and its outbox messages unless its type is at the cap.

        The project row is locked first, so concurrent creates of one project are serialised
        and the count cannot go stale between the check and the insert. False: at the cap.
        """
        async with self.writing() as conn:
            await lock_project(conn, row.project_id)
            if await _count_subscriptions(conn, row.project_id, row.notification_type) >= (
                max_per_type
            ):
                return False
            await conn.execute(subscriptions.insert().values(**msgspec.structs.asdict(row)))
            await enqueue(conn, messages, row.updated_at_ms)
        return True

    async def get_subscription(
        self, project_id: str, subscription_id: str
    ) -> SubscriptionRow | None:
        """One subscription of a project; another project's is None, like an unknown one."""
        query = sa.select(subscriptions).where(
            subscriptions.c.id == subscription_id, subscriptions.c.project_id == project_id
        )
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return subscription_of(row) if row else None

    async def list_subscriptions(
        self, project_id: str, limit: int, after: str | None
    ) -> list[SubscriptionRow]:
        """A project's subscriptions in id order, keyset-paged."""
        query = sa.select(subscriptions).where(subscriptions.c.project_id == project_id)
        if after is not None:
            query = query.where(subscriptions.c.id > after)
        query = query.order_by(subscriptions.c.id).limit(limit)
        async with self.engine.connect() as conn:
            return [subscription_of(r) for r in (await conn.execute(query)).all()]

    async def enabled_subscriptions(self, limit: int, after: str | None) -> list[SubscriptionRow]:
        """Subscriptions of every project not disabled by the system, in id order, keyset-paged."""
        query = sa.select(subscriptions).where(subscriptions.c.disabled_reason.is_(None))
        if after is not None:
            query = query.where(subscriptions.c.id > after)
        query = query.order_by(subscriptions.c.id).limit(limit)
        async with self.engine.connect() as conn:
            return [subscription_of(r) for r in (await conn.execute(query)).all()]

    async def save_subscription(
        self, row: SubscriptionRow, messages: list[OutboxMessage], *, create: bool
    ) -> bool:
        """Insert or update a subscription and its outbox messages in one transaction.

        An update applies only if the stored version is the one before `row.version`
        (optimistic locking); False means someone else changed it first.
        """
        values = msgspec.structs.asdict(row)
        async with self.writing() as conn:
            if create:
                await conn.execute(subscriptions.insert().values(**values))
            else:
                result = await conn.execute(
                    subscriptions.update()
                    .where(
                        subscriptions.c.id == row.id,
                        subscriptions.c.project_id == row.project_id,
                        subscriptions.c.version == row.version - 1,
                    )
                    .values(**values)
                )
                if not result.rowcount:
                    return False
            await enqueue(conn, messages, row.updated_at_ms)
        return True

    async def owner_notices_due(self, now_ms: int, limit: int) -> list[SubscriptionRow]:
        """Subscriptions whose owners are to be told now that the auto-disable turned them off."""
        query = (
            sa.select(subscriptions)
            .where(subscriptions.c.owner_notice_due_ms <= now_ms)
            .order_by(subscriptions.c.owner_notice_due_ms)
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            return [subscription_of(r) for r in (await conn.execute(query)).all()]

    async def move_owner_notice(self, row: SubscriptionRow, due_ms: int | None) -> bool:
        """Set when the owners of `row` are next to be told (None: never), unless its notice
        changed since `row` was read; False then (another replica took it)."""
        async with self.writing() as conn:
            result = await conn.execute(
                subscriptions.update()
                .where(
                    subscriptions.c.id == row.id,
                    subscriptions.c.project_id == row.project_id,
                    subscriptions.c.owner_notice_due_ms == row.owner_notice_due_ms,
                )
                .values(owner_notice_due_ms=due_ms)
            )
        return bool(result.rowcount)

    async def delete_subscription(
        self, project_id: str, subscription_id: str, messages: list[OutboxMessage], now_ms: int
    ) -> bool:
        """Delete a subscription and enqueue its removal in one transaction."""
        statement = subscriptions.delete().where(
            subscriptions.c.id == subscription_id, subscriptions.c.project_id == project_id
        )
        return await changed(self, statement, messages, now_ms)


async def _count_subscriptions(conn: AsyncConnection, project_id: str, kind: str) -> int:
    query = (
        sa.select(sa.func.count())
        .select_from(subscriptions)
        .where(subscriptions.c.project_id == project_id, subscriptions.c.notification_type == kind)
    )
    return int((await conn.execute(query)).scalar_one())
