"""Invitations in the control plane: created, listed, revoked, looked up and accepted once."""

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from services.common.controlplane.base import Queries
from services.common.controlplane.members import add_membership
from services.common.controlplane.records import InvitationRecord, UserRecord, record_of
from services.common.controlplane.schema import invitations, projects
from services.common.controlplane.users import email_taken, insert_user


def _pending(now_ms: int) -> tuple[sa.ColumnElement[bool], ...]:
    return (
        invitations.c.accepted_at_ms.is_(None),
        invitations.c.revoked_at_ms.is_(None),
        invitations.c.expires_at_ms > now_ms,
    )


class InvitationQueries(Queries):
    """The control plane's invitation queries."""

    async def create_invitation(self, invitation: InvitationRecord) -> None:
        """Insert an invitation (its token's hash, never the token)."""
        values = {name: getattr(invitation, name) for name in InvitationRecord.__struct_fields__}
        async with self.writing() as conn:
            await conn.execute(invitations.insert().values(**values))

    async def find_invitation(self, token_hash: str) -> tuple[InvitationRecord, str] | None:
        """The invitation with this token hash and its project's name, in any state."""
        query = (
            sa.select(*invitations.c, projects.c.name.label("project_name"))
            .join(projects, projects.c.id == invitations.c.project_id)
            .where(invitations.c.token_hash == token_hash)
        )
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return (record_of(InvitationRecord, row), row._mapping["project_name"]) if row else None

    async def list_invitations(self, project_id: str, now_ms: int) -> list[InvitationRecord]:
        """A project's pending invitations, oldest first."""
        query = (
            sa.select(invitations)
            .where(invitations.c.project_id == project_id, *_pending(now_ms))
            .order_by(invitations.c.created_at_ms, invitations.c.id)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [record_of(InvitationRecord, row) for row in rows]

    async def revoke_invitation(self, project_id: str, invitation_id: str, now_ms: int) -> bool:
        """Revoke a pending invitation of a project; False when there is none."""
        statement = (
            invitations.update()
            .where(
                invitations.c.id == invitation_id,
                invitations.c.project_id == project_id,
                *_pending(now_ms),
            )
            .values(revoked_at_ms=now_ms)
        )
        async with self.writing() as conn:
            return bool((await conn.execute(statement)).rowcount)

    async def accept_invitation(
        self, invitation: InvitationRecord, user: UserRecord, create_user: bool, now_ms: int
    ) -> bool:
        """Use an invitation once: mark it accepted, create the user if asked, and add the
        membership (an existing member keeps their role). False when it was no longer pending."""
        claim = (
            invitations.update()
            .where(invitations.c.id == invitation.id, *_pending(now_ms))
            .values(accepted_at_ms=now_ms)
        )
        try:
            async with self.writing() as conn:
                if not (await conn.execute(claim)).rowcount:
                    return False
                if create_user:
                    await insert_user(conn, user)
                await add_membership(conn, user.id, invitation.project_id, invitation.role, now_ms)
        except IntegrityError as exc:
            raise email_taken(user.email) from exc
        return True
