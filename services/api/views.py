"""Records to API bodies (pure)."""

from typing import cast

from schemas.api import Key, Plan, Project, WhoAmI
from services.common.clock import iso_ms
from services.common.controlplane import KeyRecord, ProjectRecord


def _iso(ms: int | None) -> str | None:
    return iso_ms(ms) if ms is not None else None


def project_view(project: ProjectRecord) -> Project:
    """A project as the API shows it."""
    return Project(
        id=project.id,
        name=project.name,
        plan=cast(Plan, project.plan),
        createdAt=iso_ms(project.created_at_ms),
    )


def key_view(key: KeyRecord, last_used_ms: int | None) -> Key:
    """A key as listed: never its secret or hash."""
    return Key(
        id=key.id,
        projectId=key.project_id,
        name=key.name,
        prefix=key.prefix,
        scopes=key.scopes,
        createdAt=iso_ms(key.created_at_ms),
        expiresAt=_iso(key.expires_at_ms),
        lastUsedAt=_iso(last_used_ms),
    )


def whoami_view(key: KeyRecord, last_used_ms: int | None) -> WhoAmI:
    """The calling key, as `whoami` describes it."""
    return WhoAmI(
        keyId=key.id,
        projectId=key.project_id,
        name=key.name,
        scopes=key.scopes,
        createdAt=iso_ms(key.created_at_ms),
        lastUsedAt=_iso(last_used_ms),
    )
