"""Projects in the control plane: created, read, re-planned, and locked for a transaction."""

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.controlplane.base import Queries
from services.common.controlplane.keys import bump_keys_version
from services.common.controlplane.records import ProjectRecord, project_of
from services.common.controlplane.schema import projects
from services.common.ids import new_id


class ProjectQueries(Queries):
    """The control plane's project queries."""

    async def create_project(self, name: str, plan: str, now_ms: int) -> ProjectRecord:
        """Insert a project with a fresh id."""
        record = ProjectRecord(id=new_id("prj_"), name=name, plan=plan, created_at_ms=now_ms)
        async with self.writing() as conn:
            await conn.execute(
                projects.insert().values(id=record.id, name=name, plan=plan, created_at_ms=now_ms)
            )
        return record

    async def get_project(self, project_id: str) -> ProjectRecord | None:
        """One project, or None."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(sa.select(projects).where(projects.c.id == project_id))
            ).first()
        return project_of(row) if row else None

    async def set_plan(self, project_id: str, plan: str) -> ProjectRecord | None:
        """Change a project's plan; None when it does not exist."""
        async with self.writing() as conn:
            changed = await conn.execute(
                projects.update().where(projects.c.id == project_id).values(plan=plan)
            )
            if changed.rowcount:
                await bump_keys_version(conn)
        return await self.get_project(project_id)


async def lock_project(conn: AsyncConnection, project_id: str) -> None:
    """Hold the project's row until the transaction ends."""
    if conn.dialect.name == "postgresql":
        await conn.execute(
            sa.select(projects.c.id).where(projects.c.id == project_id).with_for_update()
        )
    else:
        # SQLite has no row locks: a write as the first statement takes the database's single
        # write lock at once (waiting out busy_timeout), before anything has been read.
        await conn.execute(
            projects.update().where(projects.c.id == project_id).values(plan=projects.c.plan)
        )
