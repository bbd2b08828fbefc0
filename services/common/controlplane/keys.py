"""API keys in the control plane, and the version that moves with every change to them."""

import json
from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.controlplane.base import Queries
from services.common.controlplane.records import KeyRecord, key_of
from services.common.controlplane.schema import KEYS_VERSION, api_keys, change_versions, projects
from services.common.ids import new_id


class KeyQueries(Queries):
    """The control plane's key queries."""

    async def create_key(
        self,
        *,
        project_id: str,
        name: str,
        prefix: str,
        secret_hash: str,
        scopes: list[str],
        now_ms: int,
        expires_at_ms: int | None,
    ) -> KeyRecord:
        """Insert a key; the secret itself never reaches the database."""
        record = KeyRecord(
            id=new_id("kak_"),
            project_id=project_id,
            name=name,
            prefix=prefix,
            secret_hash=secret_hash,
            scopes=scopes,
            created_at_ms=now_ms,
            expires_at_ms=expires_at_ms,
            revoked_at_ms=None,
            last_used_at_ms=None,
        )
        async with self.writing() as conn:
            await conn.execute(
                api_keys.insert().values(
                    id=record.id,
                    project_id=project_id,
                    name=name,
                    prefix=prefix,
                    secret_hash=secret_hash,
                    scopes=json.dumps(scopes),
                    created_at_ms=now_ms,
                    expires_at_ms=expires_at_ms,
                )
            )
            await bump_keys_version(conn)
        return record

    async def find_key(self, secret_hash: str) -> KeyRecord | None:
        """The key with this hash, joined with its project's plan."""
        query = (
            sa.select(api_keys, projects.c.plan)
            .join(projects, projects.c.id == api_keys.c.project_id)
            .where(api_keys.c.secret_hash == secret_hash)
        )
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return key_of(row) if row else None

    async def get_key(self, project_id: str, key_id: str) -> KeyRecord | None:
        """One key of a project; another project's key is None, like an unknown one."""
        query = sa.select(api_keys).where(
            api_keys.c.id == key_id, api_keys.c.project_id == project_id
        )
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return key_of(row) if row else None

    async def list_keys(
        self, project_id: str, limit: int, after: tuple[int, str] | None
    ) -> list[KeyRecord]:
        """Live keys of a project in creation order, keyset-paged after (created_at_ms, id)."""
        query = sa.select(api_keys).where(
            api_keys.c.project_id == project_id, api_keys.c.revoked_at_ms.is_(None)
        )
        if after is not None:
            query = query.where(
                sa.tuple_(api_keys.c.created_at_ms, api_keys.c.id) > sa.tuple_(*after)
            )
        query = query.order_by(api_keys.c.created_at_ms, api_keys.c.id).limit(limit)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [key_of(row) for row in rows]

    async def revoke_key(self, project_id: str, key_id: str, now_ms: int) -> bool:
        """Revoke a live key of the project; False when there is none to revoke."""
        statement = (
            api_keys.update()
            .where(
                api_keys.c.id == key_id,
                api_keys.c.project_id == project_id,
                api_keys.c.revoked_at_ms.is_(None),
            )
            .values(revoked_at_ms=now_ms)
        )
        async with self.writing() as conn:
            result = await conn.execute(statement)
            if result.rowcount:
                await bump_keys_version(conn)
        return bool(result.rowcount)

    async def keys_version(self) -> int:
        """A number that moves whenever a key is created or revoked or a plan changes."""
        query = sa.select(change_versions.c.version).where(change_versions.c.name == KEYS_VERSION)
        async with self.engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one_or_none() or 0)

    async def record_key_use(self, last_used: Iterable[tuple[str, int]]) -> None:
        """Persist buffered last-used times (one statement per key, never moving backwards)."""
        items = list(last_used)
        if not items:
            return
        statement = (
            api_keys.update()
            .where(api_keys.c.id == sa.bindparam("key_id"))
            .where(
                sa.or_(
                    api_keys.c.last_used_at_ms.is_(None),
                    api_keys.c.last_used_at_ms < sa.bindparam("used_ms"),
                )
            )
            .values(last_used_at_ms=sa.bindparam("used_ms"))
        )
        async with self.writing() as conn:
            await conn.execute(statement, [{"key_id": k, "used_ms": ms} for k, ms in items])


async def bump_keys_version(conn: AsyncConnection) -> None:
    """Move the `keys` version in the caller's transaction."""
    await conn.execute(
        change_versions.update()
        .where(change_versions.c.name == KEYS_VERSION)
        .values(version=change_versions.c.version + 1)
    )
