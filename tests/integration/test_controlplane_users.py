"""Users, memberships, sessions and invitations in the control plane, on SQLite and PostgreSQL."""

import pytest

from services.common.controlplane import (
    ControlPlane,
    InvitationRecord,
    SessionRecord,
    UserRecord,
    new_user,
)
from services.common.errors import Conflict


async def _user(cp: ControlPlane, email: str, at: int = 1) -> UserRecord:
    user = new_user(email, "$argon2id$fake", at)
    await cp.create_user(user)
    return user


def _session(user_id: str, digest: str, at: int = 10) -> SessionRecord:
    return SessionRecord(digest, user_id, at, at, at + 1000)


def _invitation(
    project_id: str, by: str, digest: str, email: str = "new@example.com"
) -> InvitationRecord:
    return InvitationRecord(
        id=f"inv_{digest[:8]}", project_id=project_id, email=email, role="member",
        token_hash=digest, created_by=by, created_at_ms=10, expires_at_ms=100,
    )  # fmt: skip


async def test_migration_four_is_recorded(cp: ControlPlane) -> None:
    assert await cp.migrate(2) == []
    assert await cp.find_user("nobody@example.com") is None


async def test_users_have_unique_emails(cp: ControlPlane) -> None:
    user = await _user(cp, "ada@example.com")
    assert user.id.startswith("usr_")
    assert await cp.find_user("ada@example.com") == user
    assert await cp.get_user(user.id) == user
    with pytest.raises(Conflict):
        await _user(cp, "ada@example.com")


async def test_memberships_are_listed_oldest_first_with_project_names(cp: ControlPlane) -> None:
    ada = await _user(cp, "ada@example.com")
    first = await cp.create_project("first", "pro", 1)
    second = await cp.create_project("second", "free", 1)
    assert await cp.add_member(ada.id, second.id, "viewer", 20)
    assert await cp.add_member(ada.id, first.id, "owner", 30)
    assert not await cp.add_member(ada.id, first.id, "viewer", 40)
    listed = await cp.memberships_of(ada.id)
    assert [(m.project_id, m.project_name, m.plan, m.role) for m in listed] == [
        (second.id, "second", "free", "viewer"),
        (first.id, "first", "pro", "owner"),
    ]
    members = await cp.list_members(first.id)
    assert [(m.user_id, m.email, m.role) for m in members] == [(ada.id, ada.email, "owner")]


async def test_the_last_owner_stays(cp: ControlPlane) -> None:
    project = await cp.create_project("p", "free", 1)
    ada, bob = await _user(cp, "ada@example.com"), await _user(cp, "bob@example.com")
    await cp.add_member(ada.id, project.id, "owner", 1)
    await cp.add_member(bob.id, project.id, "member", 2)
    assert await cp.set_role(project.id, ada.id, "viewer") == "last_owner"
    assert await cp.remove_member(project.id, ada.id) == "last_owner"
    assert await cp.set_role(project.id, "usr_missing", "owner") == "missing"
    assert await cp.set_role(project.id, bob.id, "owner") == "done"
    assert await cp.remove_member(project.id, ada.id) == "done"
    assert await cp.set_role(project.id, bob.id, "owner") == "done"  # owner to owner: kept
    assert await cp.get_member(project.id, ada.id) is None
    member = await cp.get_member(project.id, bob.id)
    assert member is not None and member.role == "owner"


async def test_sessions_are_found_touched_and_revoked(cp: ControlPlane) -> None:
    ada = await _user(cp, "ada@example.com")
    await cp.create_session(_session(ada.id, "a" * 64))
    await cp.create_session(_session(ada.id, "b" * 64))
    found = await cp.find_session("a" * 64)
    assert found == (_session(ada.id, "a" * 64), ada)
    await cp.touch_session("a" * 64, 50)
    await cp.touch_session("a" * 64, 40)  # never backwards
    found = await cp.find_session("a" * 64)
    assert found is not None and found[0].last_seen_at_ms == 50
    await cp.revoke_session("a" * 64, 60)
    found = await cp.find_session("a" * 64)
    assert found is not None and found[0].revoked_at_ms == 60
    assert await cp.find_session("c" * 64) is None


async def test_a_password_change_revokes_the_other_sessions(cp: ControlPlane) -> None:
    ada = await _user(cp, "ada@example.com")
    for digest in ("a" * 64, "b" * 64, "c" * 64):
        await cp.create_session(_session(ada.id, digest))
    await cp.change_password(ada.id, "$argon2id$new", 70, keep_session="b" * 64)
    states = {d: (await cp.find_session(d)) for d in ("a" * 64, "b" * 64, "c" * 64)}
    assert {d: s[0].revoked_at_ms for d, s in states.items() if s} == {
        "a" * 64: 70, "b" * 64: None, "c" * 64: 70,
    }  # fmt: skip
    user = await cp.get_user(ada.id)
    assert user is not None and (user.password_hash, user.password_changed_at_ms) == (
        "$argon2id$new",
        70,
    )


async def test_invitations_are_single_use(cp: ControlPlane) -> None:
    project = await cp.create_project("p", "free", 1)
    ada = await _user(cp, "ada@example.com")
    invitation = _invitation(project.id, ada.id, "d" * 64)
    await cp.create_invitation(invitation)
    assert await cp.find_invitation("d" * 64) == (invitation, "p")
    assert await cp.list_invitations(project.id, 50) == [invitation]
    assert await cp.list_invitations(project.id, 100) == []  # expired
    newcomer = new_user("new@example.com", "$argon2id$x", 20)
    assert await cp.accept_invitation(invitation, newcomer, True, 20)
    assert not await cp.accept_invitation(invitation, newcomer, False, 21)
    assert [(m.email, m.role) for m in await cp.list_members(project.id)] == [
        ("new@example.com", "member")
    ]
    found = await cp.find_invitation("d" * 64)
    assert found is not None and found[0].accepted_at_ms == 20


async def test_a_revoked_or_expired_invitation_cannot_be_accepted(cp: ControlPlane) -> None:
    project = await cp.create_project("p", "free", 1)
    ada = await _user(cp, "ada@example.com")
    revoked = _invitation(project.id, ada.id, "e" * 64)
    expired = _invitation(project.id, ada.id, "f" * 64, "other@example.com")
    await cp.create_invitation(revoked)
    await cp.create_invitation(expired)
    assert not await cp.revoke_invitation("prj_other", revoked.id, 20)
    assert await cp.revoke_invitation(project.id, revoked.id, 20)
    assert not await cp.revoke_invitation(project.id, revoked.id, 21)
    assert not await cp.accept_invitation(revoked, ada, False, 30)
    assert not await cp.accept_invitation(expired, ada, False, 100)
    assert await cp.list_members(project.id) == []


async def test_accepting_for_a_taken_email_changes_nothing(cp: ControlPlane) -> None:
    project = await cp.create_project("p", "free", 1)
    ada = await _user(cp, "ada@example.com")
    invitation = _invitation(project.id, ada.id, "g" * 64, "ada@example.com")
    await cp.create_invitation(invitation)
    with pytest.raises(Conflict):
        await cp.accept_invitation(invitation, new_user("ada@example.com", "h", 5), True, 20)
    found = await cp.find_invitation("g" * 64)
    assert found is not None and found[0].accepted_at_ms is None
