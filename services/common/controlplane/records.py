"""The control plane's rows as records, and the decoding of query results into them."""

import json
from typing import Any

import sqlalchemy as sa
from msgspec import Struct


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
