"""Silences in the control plane, each change written with its outbox messages."""

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.controlplane.base import Queries
from services.common.controlplane.outbox import changed, enqueue
from services.common.controlplane.projects import lock_project
from services.common.controlplane.records import OutboxMessage, SilenceRow, record_of
from services.common.controlplane.schema import silences

DAY_MS = 24 * 3600 * 1000


class SilenceQueries(Queries):
    """The control plane's silence queries."""

    async def create_silence(
        self,
        row: SilenceRow,
        messages: list[OutboxMessage],
        max_unexpired: int,
        max_per_day: int,
    ) -> str | None:
        """Insert a silence and its outbox messages; or, without writing, "unexpired" when the
        project has `max_unexpired` silences not yet over, "per_day" when it created
        `max_per_day` in the last 24 hours (locked like subscriptions: no count goes stale)."""
        async with self.writing() as conn:
            await lock_project(conn, row.project_id)
            if await _count_unexpired(conn, row.project_id, row.created_at_ms) >= max_unexpired:
                return "unexpired"
            since = row.created_at_ms - DAY_MS
            if await _count_created(conn, row.project_id, since) >= max_per_day:
                return "per_day"
            await conn.execute(silences.insert().values(**msgspec.structs.asdict(row)))
            await enqueue(conn, messages, row.created_at_ms)
        return None

    async def get_silence(self, project_id: str, silence_id: str) -> SilenceRow | None:
        """One silence of a project; another project's is None, like an unknown one."""
        query = sa.select(silences).where(
            silences.c.id == silence_id, silences.c.project_id == project_id
        )
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return record_of(SilenceRow, row) if row else None

    async def list_silences(
        self, project_id: str, limit: int, after: str | None, unexpired_at_ms: int | None = None
    ) -> list[SilenceRow]:
        """A project's silences in id order, keyset-paged; only those not over by their
        times at `unexpired_at_ms` when it is given."""
        query = sa.select(silences).where(silences.c.project_id == project_id)
        if after is not None:
            query = query.where(silences.c.id > after)
        if unexpired_at_ms is not None:
            query = query.where(_unexpired(unexpired_at_ms))
        query = query.order_by(silences.c.id).limit(limit)
        async with self.engine.connect() as conn:
            return [record_of(SilenceRow, r) for r in (await conn.execute(query)).all()]

    async def silences_over(self, before_ms: int, limit: int) -> list[SilenceRow]:
        """Silences of any project that were over before `before_ms`, oldest id first."""
        over = sa.not_(_unexpired(before_ms - 1))  # over at `before_ms - 1` or earlier
        query = sa.select(silences).where(over).order_by(silences.c.id).limit(limit)
        async with self.engine.connect() as conn:
            return [record_of(SilenceRow, r) for r in (await conn.execute(query)).all()]

    async def delete_silence(
        self, row: SilenceRow, messages: list[OutboxMessage], now_ms: int
    ) -> bool:
        """Delete a silence as it is in `row` (False when it changed or went meanwhile) and
        enqueue its tombstones in one transaction."""
        statement = silences.delete().where(
            silences.c.id == row.id,
            silences.c.project_id == row.project_id,
            silences.c.version == row.version,
        )
        return await changed(self, statement, messages, now_ms)

    async def end_silence(
        self, row: SilenceRow, messages: list[OutboxMessage], now_ms: int
    ) -> bool:
        """Record that a silence was ended early (`row` is the ended version), with its outbox
        messages; False when it changed meanwhile."""
        statement = (
            silences.update()
            .where(
                silences.c.id == row.id,
                silences.c.project_id == row.project_id,
                silences.c.version == row.version - 1,
            )
            .values(ended_at_ms=row.ended_at_ms, version=row.version)
        )
        return await changed(self, statement, messages, now_ms)


def _unexpired(now_ms: int) -> sa.ColumnElement[bool]:
    """Not ended early and not past `endsAt` or `until` at `now_ms`."""
    return sa.and_(
        sa.or_(silences.c.ended_at_ms.is_(None), silences.c.ended_at_ms > now_ms),
        sa.or_(silences.c.ends_at_ms.is_(None), silences.c.ends_at_ms > now_ms),
        sa.or_(silences.c.until_ms.is_(None), silences.c.until_ms > now_ms),
    )


async def _count_unexpired(conn: AsyncConnection, project_id: str, now_ms: int) -> int:
    query = (
        sa.select(sa.func.count())
        .select_from(silences)
        .where(silences.c.project_id == project_id, _unexpired(now_ms))
    )
    return int((await conn.execute(query)).scalar_one())


async def _count_created(conn: AsyncConnection, project_id: str, since_ms: int) -> int:
    query = (
        sa.select(sa.func.count())
        .select_from(silences)
        .where(silences.c.project_id == project_id, silences.c.created_at_ms > since_ms)
    )
    return int((await conn.execute(query)).scalar_one())
