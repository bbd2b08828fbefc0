"""The control plane's rows as records, and the decoding of query results into them."""

import json
from typing import Any, TypeVar

import sqlalchemy as sa
from msgspec import Struct

R = TypeVar("R", bound=Struct)


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
    owner_notice_due_ms: int | None = None


class UserRecord(Struct, frozen=True):
    """A row of `users`: a person who signs in to the console."""

    id: str
    email: str
    password_hash: str
    created_at_ms: int
    password_changed_at_ms: int


class MembershipRecord(Struct, frozen=True):
    """One of a user's projects, with the project's name and plan."""

    project_id: str
    project_name: str
    plan: str
    role: str
    created_at_ms: int


class MemberRecord(Struct, frozen=True):
    """One member of a project, with the user's email."""

    user_id: str
    email: str
    role: str
    created_at_ms: int


class SessionRecord(Struct, frozen=True):
    """A row of `sessions`; the token itself is never stored."""

    id_hash: str
    user_id: str
    created_at_ms: int
    last_seen_at_ms: int
    expires_at_ms: int
    revoked_at_ms: int | None = None


class InvitationRecord(Struct, frozen=True):
    """A row of `invitations`; the token itself is never stored."""

    id: str
    project_id: str
    email: str
    role: str
    token_hash: str
    created_by: str
    created_at_ms: int
    expires_at_ms: int
    accepted_at_ms: int | None = None
    revoked_at_ms: int | None = None

    def usable(self, at_ms: int) -> bool:
        """Whether the invitation can still be accepted."""
        return (
            self.accepted_at_ms is None
            and self.revoked_at_ms is None
            and at_ms < self.expires_at_ms
        )


class SilenceRow(Struct, frozen=True):
    """A row of `silences`: matchers and schedule as JSON, times in epoch ms."""

    id: str
    project_id: str
    matchers_json: str
    comment: str
    created_by: str
    created_at_ms: int
    starts_at_ms: int
    ends_at_ms: int | None
    schedule_json: str | None
    until_ms: int | None
    ended_at_ms: int | None
    version: int


class AckRow(Struct, frozen=True):
    """A row of `alert_acks`: who acknowledged an alert of a project, and when (epoch ms)."""

    project_id: str
    alert_id: str
    acknowledged_at_ms: int
    acknowledged_by: str


class OutboxMessage(Struct, frozen=True):
    """A record to publish, written in the same transaction as the change it announces."""

    topic: str
    key: str
    partition: int | None
    value: bytes | None
    id: int = 0


def record_of(kind: type[R], row: "sa.Row[*tuple[Any, ...]]") -> R:
    """A row as a record whose fields are named like its columns."""
    return kind(**{c: row._mapping[c] for c in kind.__struct_fields__})


def subscription_of(row: sa.Row[Any]) -> SubscriptionRow:
    """A `subscriptions` row as its record."""
    return SubscriptionRow(**{c: row._mapping[c] for c in SubscriptionRow.__struct_fields__})


def key_of(row: sa.Row[Any]) -> KeyRecord:
    """An `api_keys` row (with its project's plan, when joined) as its record."""
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


def project_of(row: sa.Row[Any]) -> ProjectRecord:
    """A `projects` row as its record."""
    m = row._mapping
    return ProjectRecord(
        id=m["id"], name=m["name"], plan=m["plan"], created_at_ms=m["created_at_ms"]
    )
