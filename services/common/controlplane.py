"""The control plane (projects, keys): one SQLAlchemy Core layer for SQLite and PostgreSQL."""

import json
from collections.abc import Callable, Iterable
from typing import Any

import msgspec
import sqlalchemy as sa
from msgspec import Struct
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from services.common.errors import Unavailable
from services.common.ids import new_id

metadata = sa.MetaData()

schema_migrations = sa.Table(
    "cc_schema_migrations",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("applied_at_ms", sa.BigInteger, nullable=False),
)

projects = sa.Table(
    "projects",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("plan", sa.String(20), nullable=False),
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("project_id", sa.String(40), sa.ForeignKey("projects.id"), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("prefix", sa.String(20), nullable=False),
    sa.Column("secret_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("scopes", sa.Text, nullable=False),
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
    sa.Column("expires_at_ms", sa.BigInteger, nullable=True),
    sa.Column("revoked_at_ms", sa.BigInteger, nullable=True),
    sa.Column("last_used_at_ms", sa.BigInteger, nullable=True),
    sa.Index("ix_api_keys_project_created", "project_id", "created_at_ms", "id"),
)


subscriptions = sa.Table(
    "subscriptions",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("project_id", sa.String(40), sa.ForeignKey("projects.id"), nullable=False),
    sa.Column("notification_type", sa.String(20), nullable=False),
    sa.Column("config_json", sa.Text, nullable=False),
    sa.Column("secret_ciphertext", sa.Text, nullable=True),
    sa.Column("previous_secret_ciphertext", sa.Text, nullable=True),
    sa.Column("previous_secret_until_ms", sa.BigInteger, nullable=True),
    sa.Column("disabled_reason", sa.Text, nullable=True),
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
    sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Index("ix_subscriptions_project", "project_id", "notification_type", "id"),
)

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("topic", sa.String(100), nullable=False),
    sa.Column("key", sa.String(300), nullable=False),
    sa.Column("partition", sa.Integer, nullable=True),
    sa.Column("value", sa.LargeBinary, nullable=True),
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
    sa.Column("published_at_ms", sa.BigInteger, nullable=True),
    sa.Index("ix_outbox_pending", "published_at_ms", "id"),
)


# One counter per kind of change that replicas cache: `keys` moves with every key created or
# revoked and every plan change, so API replicas can drop their key caches when it moves.
change_versions = sa.Table(
    "cc_change_versions",
    metadata,
    sa.Column("name", sa.String(40), primary_key=True),
    sa.Column("version", sa.BigInteger, nullable=False),
)
KEYS_VERSION = "keys"


def _create(*tables: sa.Table) -> Callable[[Connection], None]:
    def apply(conn: Connection) -> None:
        for table in tables:
            table.create(conn, checkfirst=True)

    return apply


def _versions(conn: Connection) -> None:
    change_versions.create(conn, checkfirst=True)
    if conn.execute(sa.select(change_versions.c.name)).first() is None:
        conn.execute(change_versions.insert().values(name=KEYS_VERSION, version=0))


# Append only: a migration, once released, never changes. Each must be idempotent.
MIGRATIONS: list[tuple[int, str, Callable[[Connection], None]]] = [
    (1, "projects and api keys", _create(projects, api_keys)),
    (2, "notification subscriptions and the outbox", _create(subscriptions, outbox)),
    (3, "change versions for cache invalidation", _versions),
]


class ProjectRecord(Struct, frozen=True):
    """A row of `projects`."""

    id: str
    name: str
    plan: str
    created_at_ms: int


class KeyRecord(Struct, frozen=True):
    """A row of `api_keys`, with its project's plan for rate limiting."""

    id: str
    project_id: str
    name: str
    prefix: str
    secret_hash: str
    scopes: list[str]
    created_at_ms: int
    expires_at_ms: int | None
    revoked_at_ms: int | None
    last_used_at_ms: int | None
    plan: str = "free"


class SubscriptionRow(Struct, frozen=True):
    """A row of `subscriptions`: settings as JSON, the destination secret sealed."""

    id: str
    project_id: str
    notification_type: str
    config_json: str
    secret_ciphertext: str | None
    previous_secret_ciphertext: str | None
    previous_secret_until_ms: int | None
    disabled_reason: str | None
    created_at_ms: int
    updated_at_ms: int
    version: int


class OutboxMessage(Struct, frozen=True):
    """A record to publish, written in the same transaction as the change it announces."""

    topic: str
    key: str
    partition: int | None
    value: bytes | None
    id: int = 0


def _subscription(row: sa.Row[Any]) -> SubscriptionRow:
    return SubscriptionRow(**{c: row._mapping[c] for c in SubscriptionRow.__struct_fields__})


def _key(row: sa.Row[Any]) -> KeyRecord:
    m = row._mapping
    return KeyRecord(
        id=m["id"],
        project_id=m["project_id"],
        name=m["name"],
        prefix=m["prefix"],
        secret_hash=m["secret_hash"],
        scopes=json.loads(m["scopes"]),
        created_at_ms=m["created_at_ms"],
        expires_at_ms=m["expires_at_ms"],
        revoked_at_ms=m["revoked_at_ms"],
        last_used_at_ms=m["last_used_at_ms"],
        plan=m.get("plan", "free"),
    )


def _project(row: sa.Row[Any]) -> ProjectRecord:
    m = row._mapping
    return ProjectRecord(
        id=m["id"], name=m["name"], plan=m["plan"], created_at_ms=m["created_at_ms"]
    )


async def _bump_keys_version(conn: AsyncConnection) -> None:
    """Move the `keys` version in the caller's transaction."""
    await conn.execute(
        change_versions.update()
        .where(change_versions.c.name == KEYS_VERSION)
        .values(version=change_versions.c.version + 1)
    )


async def _lock_project(conn: AsyncConnection, project_id: str) -> None:
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


async def _count_subscriptions(conn: AsyncConnection, project_id: str, kind: str) -> int:
    query = (
        sa.select(sa.func.count())
        .select_from(subscriptions)
        .where(subscriptions.c.project_id == project_id, subscriptions.c.notification_type == kind)
    )
    return int((await conn.execute(query)).scalar_one())


def make_engine(url: str, connect_args: dict[str, Any] | None = None) -> AsyncEngine:
    """An async engine for `sqlite+aiosqlite://` or `postgresql+asyncpg://` URLs."""
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args=connect_args or {})

        @sa.event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=5000")
            cursor.close()

        return engine
    return create_async_engine(
        url, pool_size=10, pool_pre_ping=True, connect_args=connect_args or {}
    )


class ControlPlane:
    """Projects and keys; every method is one short transaction with bound parameters."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

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
        async with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Two API replicas starting together must not race through the same DDL.
                await conn.execute(sa.text("SELECT pg_advisory_xact_lock(424242)"))
            await conn.run_sync(_create(schema_migrations))
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

    async def create_project(self, name: str, plan: str, now_ms: int) -> ProjectRecord:
        """Insert a project with a fresh id."""
        record = ProjectRecord(id=new_id("prj_"), name=name, plan=plan, created_at_ms=now_ms)
        async with self.engine.begin() as conn:
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
        return _project(row) if row else None

    async def set_plan(self, project_id: str, plan: str) -> ProjectRecord | None:
        """Change a project's plan; None when it does not exist."""
        async with self.engine.begin() as conn:
            changed = await conn.execute(
                projects.update().where(projects.c.id == project_id).values(plan=plan)
            )
            if changed.rowcount:
                await _bump_keys_version(conn)
        return await self.get_project(project_id)

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
        async with self.engine.begin() as conn:
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
            await _bump_keys_version(conn)
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
        return _key(row) if row else None

    async def get_key(self, project_id: str, key_id: str) -> KeyRecord | None:
        """One key of a project; another project's key is None, like an unknown one."""
        query = sa.select(api_keys).where(
            api_keys.c.id == key_id, api_keys.c.project_id == project_id
        )
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return _key(row) if row else None

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
        return [_key(row) for row in rows]

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
        async with self.engine.begin() as conn:
            result = await conn.execute(statement)
            if result.rowcount:
                await _bump_keys_version(conn)
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
        async with self.engine.begin() as conn:
            await conn.execute(statement, [{"key_id": k, "used_ms": ms} for k, ms in items])

    # ---- subscriptions and the outbox ----------------------------------------------------------

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
        async with self.engine.begin() as conn:
            await _lock_project(conn, row.project_id)
            if await _count_subscriptions(conn, row.project_id, row.notification_type) >= (
                max_per_type
            ):
                return False
            await conn.execute(subscriptions.insert().values(**msgspec.structs.asdict(row)))
            await self._enqueue(conn, messages, row.updated_at_ms)
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
        return _subscription(row) if row else None

    async def list_subscriptions(
        self, project_id: str, limit: int, after: str | None
    ) -> list[SubscriptionRow]:
        """A project's subscriptions in id order, keyset-paged."""
        query = sa.select(subscriptions).where(subscriptions.c.project_id == project_id)
        if after is not None:
            query = query.where(subscriptions.c.id > after)
        query = query.order_by(subscriptions.c.id).limit(limit)
        async with self.engine.connect() as conn:
            return [_subscription(r) for r in (await conn.execute(query)).all()]

    async def save_subscription(
        self, row: SubscriptionRow, messages: list[OutboxMessage], *, create: bool
    ) -> bool:
        """Insert or update a subscription and its outbox messages in one transaction.

        An update applies only if the stored version is the one before `row.version`
        (optimistic locking); False means someone else changed it first.
        """
        values = msgspec.structs.asdict(row)
        async with self.engine.begin() as conn:
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
            await self._enqueue(conn, messages, row.updated_at_ms)
        return True

    async def delete_subscription(
        self, project_id: str, subscription_id: str, messages: list[OutboxMessage], now_ms: int
    ) -> bool:
        """Delete a subscription and enqueue its removal in one transaction."""
        async with self.engine.begin() as conn:
            result = await conn.execute(
                subscriptions.delete().where(
                    subscriptions.c.id == subscription_id, subscriptions.c.project_id == project_id
                )
            )
            if not result.rowcount:
                return False
            await self._enqueue(conn, messages, now_ms)
        return True

    async def _enqueue(
        self, conn: AsyncConnection, messages: list[OutboxMessage], now_ms: int
    ) -> None:
        if messages:
            await conn.execute(outbox.insert(), [
                {"topic": m.topic, "key": m.key, "partition": m.partition, "value": m.value,
                 "created_at_ms": now_ms} for m in messages
            ])  # fmt: skip

    async def pending_outbox(self, limit: int) -> list[OutboxMessage]:
        """The oldest unpublished outbox messages, in commit order."""
        query = (
            sa.select(outbox)
            .where(outbox.c.published_at_ms.is_(None))
            .order_by(outbox.c.id)
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            OutboxMessage(topic=r.topic, key=r.key, partition=r.partition, value=r.value, id=r.id)
            for r in rows
        ]

    async def republish_outbox(self) -> int:
        """Mark every outbox message unpublished, so that the relay rebuilds the compacted topics
        on a broker that lost them (the embedded one keeps its log in memory); how many."""
        async with self.engine.begin() as conn:
            result = await conn.execute(
                outbox.update()
                .where(outbox.c.published_at_ms.is_not(None))
                .values(published_at_ms=None)
            )
        return int(result.rowcount or 0)

    async def mark_published(self, ids: list[int], now_ms: int) -> None:
        """Record that outbox messages reached the broker."""
        if ids:
            async with self.engine.begin() as conn:
                await conn.execute(
                    outbox.update().where(outbox.c.id.in_(ids)).values(published_at_ms=now_ms)
                )
