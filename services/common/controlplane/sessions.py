"""Console sessions in the control plane: created, found with their user, touched, revoked."""

import sqlalchemy as sa

from services.common.controlplane.base import Queries
from services.common.controlplane.records import SessionRecord, UserRecord, record_of
from services.common.controlplane.schema import sessions, users


class SessionQueries(Queries):
    """The control plane's session queries."""

    async def create_session(self, session: SessionRecord) -> None:
        """Insert a session (its token's hash, never the token)."""
        values = {name: getattr(session, name) for name in SessionRecord.__struct_fields__}
        async with self.writing() as conn:
            await conn.execute(sessions.insert().values(**values))

    async def find_session(self, id_hash: str) -> tuple[SessionRecord, UserRecord] | None:
        """The session with this hash and its user, revoked or not."""
        query = (
            sa.select(
                *sessions.c,
                users.c.email,
                users.c.password_hash,
                users.c.created_at_ms.label("user_created_at_ms"),
                users.c.password_changed_at_ms,
            )
            .join(users, users.c.id == sessions.c.user_id)
            .where(sessions.c.id_hash == id_hash)
        )
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            return None
        m = row._mapping
        user = UserRecord(
            id=m["user_id"],
            email=m["email"],
            password_hash=m["password_hash"],
            created_at_ms=m["user_created_at_ms"],
            password_changed_at_ms=m["password_changed_at_ms"],
        )
        return record_of(SessionRecord, row), user

    async def touch_session(self, id_hash: str, now_ms: int) -> None:
        """Record that the session was used (the idle expiry counts from here)."""
        async with self.writing() as conn:
            await conn.execute(
                sessions.update()
                .where(sessions.c.id_hash == id_hash, sessions.c.last_seen_at_ms < now_ms)
                .values(last_seen_at_ms=now_ms)
            )

    async def revoke_session(self, id_hash: str, now_ms: int) -> None:
        """End a session (sign-out)."""
        async with self.writing() as conn:
            await conn.execute(
                sessions.update()
                .where(sessions.c.id_hash == id_hash, sessions.c.revoked_at_ms.is_(None))
                .values(revoked_at_ms=now_ms)
            )
