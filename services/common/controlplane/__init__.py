"""The control plane (projects, keys, subscriptions, silences, the outbox, users and their
sessions): one SQLAlchemy Core layer for SQLite and PostgreSQL.

`ControlPlane` is the one object services hold; its queries live by table in `projects`,
`keys`, `subscriptions`, `silences`, `outbox`, `users`, `members`, `sessions` and
`invitations`, the tables and migrations in `schema`, the records in `records`.
"""

from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from services.common.controlplane.acks import AckQueries
from services.common.controlplane.invitations import InvitationQueries
from services.common.controlplane.keys import KeyQueries
from services.common.controlplane.members import MemberChange, MemberQueries
from services.common.controlplane.outbox import OutboxQueries
from services.common.controlplane.projects import ProjectQueries
from services.common.controlplane.records import (
    AckRow,
    InvitationRecord,
    KeyRecord,
    MemberRecord,
    MembershipRecord,
    OutboxMessage,
    ProjectRecord,
    SessionRecord,
    SilenceRow,
    SubscriptionRow,
    UserRecord,
)
from services.common.controlplane.schema import MIGRATIONS, create_tables, outbox, schema_migrations
from services.common.controlplane.sessions import SessionQueries
from services.common.controlplane.silences import SilenceQueries
from services.common.controlplane.subscriptions import SubscriptionQueries
from services.common.controlplane.users import UserQueries, new_user
from services.common.errors import Unavailable

__all__ = [
    "AckRow",
    "ControlPlane",
    "InvitationRecord",
    "KeyRecord",
    "MemberChange",
    "MemberRecord",
    "MembershipRecord",
    "OutboxMessage",
    "ProjectRecord",
    "SessionRecord",
    "SilenceRow",
    "SubscriptionRow",
    "UserRecord",
    "make_engine",
    "new_user",
    "outbox",
]


def make_engine(url: str, connect_args: dict[str, Any] | None = None) -> AsyncEngine:
    """An async engine for `sqlite+aiosqlite://` or `postgresql+asyncpg://` URLs."""
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args=connect_args or {})

        @sa.event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    return create_async_engine(
        url, pool_size=10, pool_pre_ping=True, connect_args=connect_args or {}
    )


class ControlPlane(
    ProjectQueries,
    KeyQueries,
    SubscriptionQueries,
    OutboxQueries,
    UserQueries,
    MemberQueries,
    SessionQueries,
    InvitationQueries,
    SilenceQueries,
    AckQueries,
):
    """Projects, keys, subscriptions, the outbox, users, memberships, sessions and invitations;
    every method is one short transaction with bound parameters."""

    async def close(self) -> None:
        """Release pooled connections."""
        await self.engine.dispose()

    async def ping(self) -> None:
        """Raise Unavailable when the database cannot answer."""
        try:
            async with self.engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
        except (SQLAlchemyError, OSError) as exc:
            raise Unavailable(f"control-plane database unreachable: {type(exc).__name__}") from exc

    async def migrate(self, now_ms: int) -> list[int]:
        """Apply pending migrations in order; return the versions applied."""
        async with self.writing() as conn:
            if conn.dialect.name == "postgresql":
                # Two API replicas starting together must not race through the same DDL.
                await conn.execute(sa.text("SELECT pg_advisory_xact_lock(424242)"))
            await conn.run_sync(create_tables(schema_migrations))
            done = set((await conn.execute(sa.select(schema_migrations.c.version))).scalars())
            applied = []
            for version, name, apply in MIGRATIONS:
                if version in done:
                    continue
                await conn.run_sync(apply)
                await conn.execute(
                    schema_migrations.insert().values(
                        version=version, name=name, applied_at_ms=now_ms
                    )
                )
                applied.append(version)
            return applied
