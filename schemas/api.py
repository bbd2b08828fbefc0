"""Bodies of the HTTP API (contract sections 1, 2 and 7)."""

from datetime import datetime
from typing import Annotated, Literal

from msgspec import UNSET, Meta, Struct, UnsetType

from schemas.bounds import field_error, time_error

Plan = Literal["free", "pro", "team", "enterprise"]
Scope = Literal[
    "projects:read",
    "workflows:read",
    "runs:read",
    "runs:cancel",
    "logs:read",
    "events:write",
    "notifications:read",
    "notifications:write",
    "keys:read",
    "keys:write",
    "*",
]
ALL_SCOPES: tuple[str, ...] = Scope.__args__  # type: ignore[attr-defined]

Name = Annotated[str, Meta(min_length=1, max_length=200)]
AwareDatetime = Annotated[datetime, Meta(tz=True)]


class ErrorDetail(Struct, frozen=True):
    """One offending field of a rejected request."""

    field: str
    message: str


class ErrorInfo(Struct, frozen=True, omit_defaults=True):
    """What went wrong, in the contract's error envelope."""

    code: str
    message: str
    requestId: str
    details: list[ErrorDetail] | UnsetType = UNSET


class ErrorBody(Struct, frozen=True):
    """The error envelope: every non-2xx response has this shape."""

    error: ErrorInfo


class Project(Struct, frozen=True):
    """A tenant: every key, log and subscription belongs to one."""

    id: str
    name: str
    plan: Plan
    createdAt: str


class Key(Struct, frozen=True):
    """An API key as listed; the secret is never part of it."""

    id: str
    projectId: str
    name: str
    prefix: str
    scopes: list[str]
    createdAt: str
    expiresAt: str | None
    lastUsedAt: str | None


class CreatedKey(Key, frozen=True, kw_only=True):
    """A key just created: the only time its secret is shown."""

    secret: str


class WhoAmI(Struct, frozen=True):
    """The calling key, as `GET /api/v1/whoami` describes it."""

    keyId: str
    projectId: str
    name: str
    scopes: list[str]
    createdAt: str
    lastUsedAt: str | None


class RevokedKey(Struct, frozen=True):
    """The answer to a revocation."""

    id: str
    revokedAt: str


class CreateKeyBody(Struct, frozen=True, forbid_unknown_fields=True):
    """Body of `POST /api/v1/keys`."""

    name: Name
    scopes: Annotated[list[Scope], Meta(min_length=1, max_length=len(ALL_SCOPES))]
    expiresAt: AwareDatetime | None = None

    def __post_init__(self) -> None:
        """Bounds that `Meta` cannot express."""
        if self.expiresAt is not None and (problem := time_error(self.expiresAt)):
            raise field_error("expiresAt", problem)


class CreateProjectBody(Struct, frozen=True, forbid_unknown_fields=True):
    """Body of `POST /admin/v1/projects`."""

    name: Name
    plan: Plan = "free"


class PatchProjectBody(Struct, frozen=True, forbid_unknown_fields=True):
    """Body of `PATCH /admin/v1/projects/{id}`."""

    plan: Plan


class ProjectCreated(Struct, frozen=True):
    """A new project with its first key, which holds every scope."""

    project: Project
    key: CreatedKey


class Health(Struct, frozen=True):
    """Liveness or readiness, with the state of each dependency."""

    status: Literal["ok", "unavailable"]
    checks: dict[str, str] = {}


class Accepted(Struct, frozen=True):
    """How many events were put on the log."""

    accepted: int
