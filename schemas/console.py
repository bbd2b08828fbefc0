"""Bodies of the console's API: sessions, members and invitations (docs/console.md)."""

from typing import Annotated, Literal

from msgspec import Meta, Struct

Role = Literal["owner", "member", "viewer"]
ROLES: tuple[str, ...] = Role.__args__  # type: ignore[attr-defined]

MAX_EMAIL_CHARS = 254  # RFC 5321's limit on a path
EMAIL_PATTERN = r"^[^@\s]{1,64}@[^@\s.]+(\.[^@\s.]+)+$"
Email = Annotated[
    str,
    Meta(
        max_length=MAX_EMAIL_CHARS,
        pattern=EMAIL_PATTERN,
        description="An email address (compared without regard to case).",
    ),
]
Password = Annotated[str, Meta(min_length=1, max_length=256)]
NewPassword = Annotated[str, Meta(min_length=12, max_length=256)]
Token = Annotated[str, Meta(min_length=1, max_length=128)]


class SignInBody(Struct, frozen=True, forbid_unknown_fields=True):
    """Body of `POST /api/v1/session`."""

    email: Email
    password: Password


class PasswordChangeBody(Struct, frozen=True, forbid_unknown_fields=True):
    """Body of `POST /api/v1/session/password`."""

    currentPassword: Password
    newPassword: NewPassword


class MemberPatchBody(Struct, frozen=True, forbid_unknown_fields=True):
    """Body of `PATCH /api/v1/members/{userId}`."""

    role: Role


class InvitationBody(Struct, frozen=True, forbid_unknown_fields=True):
    """Body of `POST /api/v1/invitations`."""

    email: Email
    role: Role


class AcceptInvitationBody(Struct, frozen=True, forbid_unknown_fields=True):
    """Body of `POST /api/v1/invitations/accept`: the password becomes a new user's own, or
    must be an existing user's."""

    token: Token
    password: Password


class SessionUser(Struct, frozen=True):
    """The signed-in person."""

    id: str
    email: str


class SessionMembership(Struct, frozen=True):
    """One project of the signed-in person, with their role in it."""

    projectId: str
    projectName: str
    role: Role


class Session(Struct, frozen=True):
    """A console session: who, their projects, and the token to echo in `X-CSRF-Token`."""

    user: SessionUser
    memberships: list[SessionMembership]
    csrfToken: str


class Member(Struct, frozen=True):
    """A member of the session's project."""

    userId: str
    email: str
    role: Role
    createdAt: str


class Invitation(Struct, frozen=True):
    """A pending invitation to the session's project."""

    id: str
    email: str
    role: Role
    createdAt: str
    expiresAt: str
    createdBy: str


class CreatedInvitation(Invitation, frozen=True, kw_only=True):
    """An invitation just created: the only time its token (and link) is shown."""

    token: str
    url: str


class InvitationLookup(Struct, frozen=True):
    """What an invitation link offers, shown before it is accepted."""

    email: str
    projectName: str
    role: Role
    expiresAt: str
