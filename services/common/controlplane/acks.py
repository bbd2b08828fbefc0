"""Alert acknowledgements in the control plane, each written with its outbox messages."""

import msgspec
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from services.common.controlplane.base import Queries
from services.common.controlplane.outbox import changed, enqueue
from services.common.controlplane.records import AckRow, OutboxMessage, record_of
from services.common.controlplane.schema import alert_acks


class AckQueries(Queries):
    """The control plane's acknowledgement queries."""

    async def get_ack(self, project_id: str, alert_id: str) -> AckRow | None:
        """The acknowledgement of an alert of a project, if any."""
        query = sa.select(alert_acks).where(
            alert_acks.c.project_id == project_id, alert_acks.c.alert_id == alert_id
        )
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return record_of(AckRow, row) if row else None

    async def acknowledge(self, row: AckRow, messages: list[OutboxMessage]) -> AckRow:
        """Record an acknowledgement and its outbox messages, once: an alert acknowledged
        already keeps its first acknowledgement (returned), and nothing is published again."""
        try:
            return await self._acknowledge(row, messages)
        except IntegrityError:  # acknowledged concurrently: that one stands
            found = await self.get_ack(row.project_id, row.alert_id)
            if found is None:
                raise
            return found

    async def _acknowledge(self, row: AckRow, messages: list[OutboxMessage]) -> AckRow:
        async with self.writing() as conn:
            found = (
                await conn.execute(
                    sa.select(alert_acks).where(
                        alert_acks.c.project_id == row.project_id,
                        alert_acks.c.alert_id == row.alert_id,
                    )
                )
            ).first()
            if found is not None:
                return record_of(AckRow, found)
            await conn.execute(alert_acks.insert().values(**msgspec.structs.asdict(row)))
            await enqueue(conn, messages, row.acknowledged_at_ms)
        return row

    async def acks_before(self, before_ms: int, limit: int) -> list[AckRow]:
        """Acknowledgements of any project made before `before_ms`, oldest first."""
        query = (
            sa.select(alert_acks)
            .where(alert_acks.c.acknowledged_at_ms < before_ms)
            .order_by(alert_acks.c.acknowledged_at_ms, alert_acks.c.alert_id)
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            return [record_of(AckRow, r) for r in (await conn.execute(query)).all()]

    async def delete_ack(self, row: AckRow, messages: list[OutboxMessage], now_ms: int) -> bool:
        """Delete an acknowledgement (False when it went meanwhile) and enqueue its tombstones
        in one transaction."""
        statement = alert_acks.delete().where(
            alert_acks.c.project_id == row.project_id, alert_acks.c.alert_id == row.alert_id
        )
        return await changed(self, statement, messages, now_ms)
