"""The control plane's tables and the migrations that create them."""

from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

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
    # When the owners are next to be emailed that the auto-disable turned it off (None: nobody
    # is to be told).
    sa.Column("owner_notice_due_ms", sa.BigInteger, nullable=True),
    sa.Index("ix_subscriptions_project", "project_id", "notification_type", "id"),
    # The auto-disable loop's poll for notices due: only the few rows with one are indexed.
    sa.Index(
        "ix_subscriptions_owner_notice",
        "owner_notice_due_ms",
        postgresql_where=sa.text("owner_notice_due_ms IS NOT NULL"),
        sqlite_where=sa.text("owner_notice_due_ms IS NOT NULL"),
    ),
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


users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("email", sa.String(254), nullable=False, unique=True),  # stored lower-cased
    sa.Column("password_hash", sa.Text, nullable=False),  # argon2id, with its parameters
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
    sa.Column("password_changed_at_ms", sa.BigInteger, nullable=False),
)

memberships = sa.Table(
    "memberships",
    metadata,
    sa.Column("user_id", sa.String(40), sa.ForeignKey("users.id"), primary_key=True),
    sa.Column("project_id", sa.String(40), sa.ForeignKey("projects.id"), primary_key=True),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
    sa.Index("ix_memberships_project", "project_id", "created_at_ms"),
)

sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("id_hash", sa.String(64), primary_key=True),  # HMAC-SHA256 of the token
    sa.Column("user_id", sa.String(40), sa.ForeignKey("users.id"), nullable=False),
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
    sa.Column("last_seen_at_ms", sa.BigInteger, nullable=False),
    sa.Column("expires_at_ms", sa.BigInteger, nullable=False),  # absolute
    sa.Column("revoked_at_ms", sa.BigInteger, nullable=True),
    sa.Index("ix_sessions_user", "user_id"),
)

invitations = sa.Table(
    "invitations",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("project_id", sa.String(40), sa.ForeignKey("projects.id"), nullable=False),
    sa.Column("email", sa.String(254), nullable=False),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created_by", sa.String(40), sa.ForeignKey("users.id"), nullable=False),
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
    sa.Column("expires_at_ms", sa.BigInteger, nullable=False),
    sa.Column("accepted_at_ms", sa.BigInteger, nullable=True),
    sa.Column("revoked_at_ms", sa.BigInteger, nullable=True),
    sa.Index("ix_invitations_project", "project_id", "created_at_ms"),
)

silences = sa.Table(
    "silences",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("project_id", sa.String(40), sa.ForeignKey("projects.id"), nullable=False),
    sa.Column("matchers_json", sa.Text, nullable=False),
    sa.Column("comment", sa.Text, nullable=False),
    sa.Column("created_by", sa.String(300), nullable=False),
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
    sa.Column("starts_at_ms", sa.BigInteger, nullable=False),
    sa.Column("ends_at_ms", sa.BigInteger, nullable=True),  # one-off
    sa.Column("schedule_json", sa.Text, nullable=True),  # weekly
    sa.Column("until_ms", sa.BigInteger, nullable=True),
    sa.Column("ended_at_ms", sa.BigInteger, nullable=True),  # ended early
    sa.Column("version", sa.Integer, nullable=False),
    sa.Index("ix_silences_project", "project_id", "id"),
)

# Acknowledged alerts (the alerts themselves live in ClickHouse, derived from the engine's events).
alert_acks = sa.Table(
    "alert_acks",
    metadata,
    sa.Column("project_id", sa.String(40), sa.ForeignKey("projects.id"), primary_key=True),
    sa.Column("alert_id", sa.String(40), primary_key=True),
    sa.Column("acknowledged_at_ms", sa.BigInteger, nullable=False),
    sa.Column("acknowledged_by", sa.String(300), nullable=False),
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


def add_column(table: sa.Table, name: str) -> Callable[[Connection], None]:
    """Add a column of `table` (as the metadata declares it) unless it is there already."""

    def apply(conn: Connection) -> None:
        if name in {c["name"] for c in sa.inspect(conn).get_columns(table.name)}:
            return
        column = table.c[name]
        kind = column.type.compile(dialect=conn.dialect)
        ddl = f"ALTER TABLE {table.name} ADD COLUMN {name} {kind}"  # names from the metadata
        conn.execute(sa.text(ddl))

    return apply


def create_index(table: sa.Table, name: str) -> Callable[[Connection], None]:
    """Create an index of `table` (as the metadata declares it) unless it is there already."""

    def apply(conn: Connection) -> None:
        next(i for i in table.indexes if i.name == name).create(conn, checkfirst=True)

    return apply


def create_tables(*tables: sa.Table) -> Callable[[Connection], None]:
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
    (1, "projects and api keys", create_tables(projects, api_keys)),
    (2, "notification subscriptions and the outbox", create_tables(subscriptions, outbox)),
    (3, "change versions for cache invalidation", _versions),
    (
        4,
        "users, memberships, sessions, invitations",
        create_tables(users, memberships, sessions, invitations),
    ),
    (5, "silences", create_tables(silences)),
    (6, "alert acknowledgements", create_tables(alert_acks)),
    (
        7,
        "owner notices of disabled subscriptions",
        add_column(subscriptions, "owner_notice_due_ms"),
    ),
    (
        8,
        "index of owner notices due",
        create_index(subscriptions, "ix_subscriptions_owner_notice"),
    ),
]
