"""Routes: `/api/v1/invitations`: owners invite people by email; the link's token is used once.

Only the token's HMAC is stored; the token is shown once, in the answer to its creation, inside
a console link. Anyone holding the link may look it up and accept it: a new email sets its
password there, an existing user proves theirs.
"""

from datetime import timedelta
from typing import cast

import msgspec
from aiohttp import web

from schemas.console import (
    AcceptInvitationBody,
    CreatedInvitation,
    Invitation,
    InvitationBody,
    InvitationLookup,
    Role,
    Session,
)
from services.api import csrf
from services.api.routing import Call, Page, Route, text_param_doc
from services.api.sessionauth import new_token, token_digest
from services.api.signin import normalise_email, refund_attempt, start_session, take_attempt
from services.common.clock import iso_ms, now_ms
from services.common.controlplane import InvitationRecord, UserRecord, new_user
from services.common.errors import Conflict, InvalidInput, NotFound, Unauthenticated
from services.common.ids import new_id
from services.common.passwords import hash_password, password_problem, verify_password

ACCEPT_PATH = "/invite"  # the console page that accepts an invitation (`#<token>`)
# The token rides in the fragment: browsers never send it to a server, in a request or a Referer.
GONE = "This invitation link is unknown, used, revoked or expired; ask for a new one."


def invitation_view(invitation: InvitationRecord) -> Invitation:
    """An invitation as the API shows it: never its token."""
    return Invitation(
        id=invitation.id,
        email=invitation.email,
        role=cast(Role, invitation.role),
        createdAt=iso_ms(invitation.created_at_ms),
        expiresAt=iso_ms(invitation.expires_at_ms),
        createdBy=invitation.created_by,
    )


def console_base(request: web.Request, public_base_url: str | None) -> str:
    """Where people reach the console: the public base URL, else this request's origin."""
    return (public_base_url or f"{request.scheme}://{request.host}").rstrip("/")


async def create_invitation(call: Call) -> CreatedInvitation:
    """Invite an email to the session's project with a role."""
    body: InvitationBody = call.body
    deps, project_id, email = call.deps, call.principal.project_id, normalise_email(body.email)
    existing = await deps.controlplane.find_user(email)
    if existing and await deps.controlplane.get_member(project_id, existing.id):
        raise Conflict(f"{email} is already a member of this project.")
    token, at = new_token(), now_ms(deps.clock)
    ttl_ms = int(timedelta(hours=deps.settings.invite_ttl_hours).total_seconds() * 1000)
    record = InvitationRecord(
        id=new_id("inv_"), project_id=project_id, email=email, role=body.role,
        token_hash=token_digest(deps, token, "invitation"), created_by=call.person.user.id,
        created_at_ms=at, expires_at_ms=at + ttl_ms,
    )  # fmt: skip
    await deps.controlplane.create_invitation(record)
    url = f"{console_base(call.request, deps.settings.public_base_url)}{ACCEPT_PATH}#{token}"
    view = invitation_view(record)
    return CreatedInvitation(**msgspec.structs.asdict(view), token=token, url=url)


async def list_invitations(call: Call) -> Page:
    """The project's pending invitations, oldest first."""
    at = now_ms(call.deps.clock)
    pending = await call.deps.controlplane.list_invitations(call.principal.project_id, at)
    return Page([invitation_view(i) for i in pending], None, False)


async def revoke_invitation(call: Call) -> None:
    """Revoke a pending invitation: its link stops working."""
    invitation_id, at = call.path("id"), now_ms(call.deps.clock)
    if not await call.deps.controlplane.revoke_invitation(
        call.principal.project_id, invitation_id, at
    ):
        raise NotFound(f"No pending invitation {invitation_id[:64]} in this project.")


async def _pending(call: Call, token: str) -> tuple[InvitationRecord, str]:
    found = await call.deps.controlplane.find_invitation(
        token_digest(call.deps, token, "invitation")
    )
    if found is None or not found[0].usable(now_ms(call.deps.clock)):
        raise NotFound(GONE)
    return found


async def lookup_invitation(call: Call) -> InvitationLookup:
    """What an invitation link offers, before it is accepted."""
    token = call.query.get("token", "")
    if not 1 <= len(token) <= 128:
        raise InvalidInput.field("token", "Must be the token of an invitation link.")
    invitation, project_name = await _pending(call, token)
    return InvitationLookup(
        email=invitation.email,
        projectName=project_name,
        role=cast(Role, invitation.role),
        expiresAt=iso_ms(invitation.expires_at_ms),
    )


async def accept_invitation(call: Call) -> web.Response:
    """Use an invitation once: join its project (as a new user with this password, or as the
    existing user whose password it is) and start a session."""
    body: AcceptInvitationBody = call.body
    csrf.check_origin(call.request, call.deps.settings)
    invitation, _ = await _pending(call, body.token)
    user, create = await _invitee(call, invitation.email, body.password)
    if not await call.deps.controlplane.accept_invitation(
        invitation, user, create, now_ms(call.deps.clock)
    ):
        raise NotFound(GONE)
    return await start_session(call.request, call.deps, user)


async def _invitee(call: Call, email: str, password: str) -> tuple[UserRecord, bool]:
    """The user accepting: an existing one whose password this is, or a new one to create."""
    existing = await call.deps.controlplane.find_user(email)
    if existing is None:
        if problem := password_problem(password):
            raise InvalidInput.field("password", problem)
        return new_user(email, await hash_password(password), now_ms(call.deps.clock)), True
    address = call.request.remote or "unknown"
    await take_attempt(call.deps, email, address)
    if not await verify_password(existing.password_hash, password):
        raise Unauthenticated(
            f"{email} already has an account: enter its password to accept the invitation."
        )
    await refund_attempt(call.deps, email, address)
    return existing, False


ROUTES = [
    Route(
        "POST",
        "/api/v1/invitations",
        create_invitation,
        "Invite an email to the project with a role (owners only; the token is shown once)",
        "invitations",
        auth="session",
        role="owner",
        body=InvitationBody,
        response=CreatedInvitation,
        status=201,
        conflict="the email is already a member of the project",
    ),
    Route(
        "GET",
        "/api/v1/invitations",
        list_invitations,
        "List the project's pending invitations (owners only)",
        "invitations",
        auth="session",
        role="owner",
        response=Invitation,
        paged=True,
    ),
    Route(
        "GET",
        "/api/v1/invitations/lookup",
        lookup_invitation,
        "Describe a pending invitation by its token",
        "invitations",
        auth="none",
        response=InvitationLookup,
        params=(text_param_doc("token", "the token of the invitation link", 128),),
    ),
    Route(
        "POST",
        "/api/v1/invitations/accept",
        accept_invitation,
        "Accept an invitation: join its project and start a session (sets the cookies)",
        "invitations",
        auth="none",
        body=AcceptInvitationBody,
        response=Session,
        conflict="a user with the invitation's email was created meanwhile",
    ),
    Route(
        "DELETE",
        "/api/v1/invitations/{id}",
        revoke_invitation,
        "Revoke a pending invitation (owners only)",
        "invitations",
        auth="session",
        role="owner",
        status=204,
    ),
]
