"""Users in the control plane: created, found by email, and their passwords changed."""

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.controlplane.base import Queries
from services.common.controlplane.records import UserRecord, record_of
from services.common.controlplane.schema import sessions, users
from services.common.errors import Conflict
from services.common.ids import new_id


def stored_email(email: str) -> str:
    """The form emails are stored and compared in: trimmed and lower-cased."""
    return email.strip().lower()


def new_user(email: str, password_hash: str, now_ms: int) -> UserRecord:
    """A user record with a fresh id, not yet stored."""
    return UserRecord(
        id=new_id("usr_"),
        email=stored_email(email),
        password_hash=password_hash,
        created_at_ms=now_ms,
        password_changed_at_ms=now_ms,
    )


def email_taken(email: str) -> Conflict:
    """The error of a second user with one email."""
    return Conflict(f"A user with the email {email} already exists.")


async def insert_user(conn: AsyncConnection, user: UserRecord) -> None:
    """Insert a user in the caller's transaction; Conflict when the email is taken (a race
    past this check ends in the unique index, which the caller turns into Conflict too)."""
    taken = await conn.execute(sa.select(users.c.id).where(users.c.email == user.email))
    if taken.first() is not None:
        raise email_taken(user.email)
    await conn.execute(users.insert().values(**_columns(user)))


def _columns(user: UserRecord) -> dict[str, object]:
    return {name: getattr(user, name) for name in UserRecord.__struct_fields__}


class UserQueries(Queries):
    """The control plane's user queries."""

    async def create_user(self, user: UserRecord) -> None:
        """Insert a user; Conflict when the email is taken."""
        try:
            async with self.writing() as conn:
                await insert_user(conn, user)
        except IntegrityError as exc:
            raise email_taken(user.email) from exc

    async def find_user(self, email: str) -> UserRecord | None:
        """The user with this email (in any case), or None."""
        query = sa.select(users).where(users.c.email == stored_email(email))
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return record_of(UserRecord, row) if row else None

    async def get_user(self, user_id: str) -> UserRecord | None:
        """One user, or None."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(users).where(users.c.id == user_id))).first()
        return record_of(UserRecord, row) if row else None

    async def change_password(
        self, user_id: str, password_hash: str, now_ms: int, keep_session: str | None
    ) -> None:
        """Store a new password hash and revoke every session of the user but `keep_session`."""
        others = sessions.c.id_hash != keep_session if keep_session else sa.true()
        async with self.writing() as conn:
            await conn.execute(
                users.update()
                .where(users.c.id == user_id)
                .values(password_hash=password_hash, password_changed_at_ms=now_ms)
            )
            await conn.execute(
                sessions.update()
                .where(sessions.c.user_id == user_id, sessions.c.revoked_at_ms.is_(None), others)
                .values(revoked_at_ms=now_ms)
            )
