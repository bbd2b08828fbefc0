"""Routes: `/api/v1/members` of the session's project (listed by anyone, changed by owners)."""

from typing import cast

from schemas.console import Member, MemberPatchBody, Role
from services.api.routing import Call, Page, Route
from services.common.clock import iso_ms
from services.common.controlplane import MemberChange, MemberRecord
from services.common.errors import Conflict, NotFound

LAST_OWNER = "A project keeps at least one owner: make another member an owner first."


def member_view(member: MemberRecord) -> Member:
    """A member as the API shows it."""
    return Member(
        userId=member.user_id,
        email=member.email,
        role=cast(Role, member.role),
        createdAt=iso_ms(member.created_at_ms),
    )


def _checked(change: MemberChange, user_id: str) -> None:
    if change == "missing":
        raise NotFound(f"No member {user_id[:64]} in this project.")
    if change == "last_owner":
        raise Conflict(LAST_OWNER)


async def list_members(call: Call) -> Page:
    """The members of the session's project, oldest first (one page: projects have few)."""
    members = await call.deps.controlplane.list_members(call.principal.project_id)
    return Page([member_view(m) for m in members], None, False)


async def change_role(call: Call) -> Member:
    """Give a member another role (never taking the last owner's)."""
    body: MemberPatchBody = call.body
    project_id, user_id = call.principal.project_id, call.path("userId")
    _checked(await call.deps.controlplane.set_role(project_id, user_id, body.role), user_id)
    member = await call.deps.controlplane.get_member(project_id, user_id)
    if member is None:  # removed in between
        raise NotFound(f"No member {user_id[:64]} in this project.")
    return member_view(member)


async def remove_member(call: Call) -> None:
    """Remove a member from the project (never the last owner)."""
    user_id = call.path("userId")
    change = await call.deps.controlplane.remove_member(call.principal.project_id, user_id)
    _checked(change, user_id)


ROUTES = [
    Route(
        "GET",
        "/api/v1/members",
        list_members,
        "List the members of the session's project",
        "members",
        auth="session",
        response=Member,
        paged=True,
    ),
    Route(
        "PATCH",
        "/api/v1/members/{userId}",
        change_role,
        "Change a member's role (owners only)",
        "members",
        auth="session",
        role="owner",
        body=MemberPatchBody,
        response=Member,
        conflict="the project would be left without an owner",
    ),
    Route(
        "DELETE",
        "/api/v1/members/{userId}",
        remove_member,
        "Remove a member from the project (owners only)",
        "members",
        auth="session",
        role="owner",
        status=204,
        conflict="the project would be left without an owner",
    ),
]
