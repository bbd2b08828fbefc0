"""Memberships in the control plane: who belongs to which project, with which role.

A project never loses its last owner: role changes and removals lock the project row, count its
owners and refuse the change that would leave none.
"""

from typing import Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.controlplane.base import Queries
from services.common.controlplane.projects import lock_project
from services.common.controlplane.records import MemberRecord, MembershipRecord, record_of
from services.common.controlplane.schema import memberships, projects, users

MemberChange = Literal["done", "missing", "last_owner"]


async def add_membership(
    conn: AsyncConnection, user_id: str, project_id: str, role: str, now_ms: int
) -> bool:
    """Make a user a member in the caller's transaction; False when they already are one."""
    existing = await conn.execute(sa.select(memberships.c.role).where(*_one(project_id, user_id)))
    if existing.first() is not None:
        return False
    await conn.execute(
        memberships.insert().values(
            user_id=user_id, project_id=project_id, role=role, created_at_ms=now_ms
        )
    )
    return True


class MemberQueries(Queries):
    """The control plane's membership queries."""

    async def add_member(self, user_id: str, project_id: str, role: str, now_ms: int) -> bool:
        """Make a user a member of a project; False when they already are one."""
        async with self.writing() as conn:
            return await add_membership(conn, user_id, project_id, role, now_ms)

    async def memberships_of(self, user_id: str) -> list[MembershipRecord]:
        """A user's projects, oldest membership first."""
        query = (
            sa.select(
                memberships.c.project_id,
                projects.c.name.label("project_name"),
                projects.c.plan,
                memberships.c.role,
                memberships.c.created_at_ms,
            )
            .join(projects, projects.c.id == memberships.c.project_id)
            .where(memberships.c.user_id == user_id)
            .order_by(memberships.c.created_at_ms, memberships.c.project_id)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [record_of(MembershipRecord, row) for row in rows]

    async def list_members(self, project_id: str) -> list[MemberRecord]:
        """A project's members, oldest first."""
        async with self.engine.connect() as conn:
            rows = (await conn.execute(_members().order_by(
                memberships.c.created_at_ms, memberships.c.user_id
            ).where(memberships.c.project_id == project_id))).all()  # fmt: skip
        return [record_of(MemberRecord, row) for row in rows]

    async def get_member(self, project_id: str, user_id: str) -> MemberRecord | None:
        """One member of a project, or None."""
        query = _members().where(
            memberships.c.project_id == project_id, memberships.c.user_id == user_id
        )
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return record_of(MemberRecord, row) if row else None

    async def set_role(self, project_id: str, user_id: str, role: str) -> MemberChange:
        """Change a member's role, unless that would leave the project without an owner."""
        async with self.writing() as conn:
            problem = await _check_owner_kept(conn, project_id, user_id, role)
            if problem is None:
                await conn.execute(
                    memberships.update().where(*_one(project_id, user_id)).values(role=role)
                )
        return problem or "done"

    async def remove_member(self, project_id: str, user_id: str) -> MemberChange:
        """Remove a member, unless that would leave the project without an owner."""
        async with self.writing() as conn:
            problem = await _check_owner_kept(conn, project_id, user_id, None)
            if problem is None:
                await conn.execute(memberships.delete().where(*_one(project_id, user_id)))
        return problem or "done"


def _members() -> sa.Select[tuple[str, str, str, int]]:
    return sa.select(
        memberships.c.user_id, users.c.email, memberships.c.role, memberships.c.created_at_ms
    ).join(users, users.c.id == memberships.c.user_id)


def _one(project_id: str, user_id: str) -> tuple[sa.ColumnElement[bool], ...]:
    return (memberships.c.project_id == project_id, memberships.c.user_id == user_id)


async def _check_owner_kept(
    conn: AsyncConnection, project_id: str, user_id: str, new_role: str | None
) -> MemberChange | None:
    """Lock the project; why the change may not happen, or None when it may."""
    await lock_project(conn, project_id)
    current = (
        await conn.execute(sa.select(memberships.c.role).where(*_one(project_id, user_id)))
    ).scalar_one_or_none()
    if current is None:
        return "missing"
    if current != "owner" or new_role == "owner":
        return None
    owners = (
        await conn.execute(
            sa.select(sa.func.count())
            .select_from(memberships)
            .where(memberships.c.project_id == project_id, memberships.c.role == "owner")
        )
    ).scalar_one()
    return "last_owner" if owners <= 1 else None
