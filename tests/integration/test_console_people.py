"""Members and invitations through the API's routes in this process, on SQLite and PostgreSQL:
owners manage people, a project keeps its last owner, invitation links work once and expire."""

from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from services.common.controlplane import ControlPlane
from tests.integration.console import (
    PASSWORD,
    Browser,
    Clock,
    cheap_hashes,  # noqa: F401 - the autouse fixture
    console_api,
    person,
)

pytestmark = pytest.mark.filterwarnings("ignore::aiohttp.web_exceptions.NotAppKeyWarning")

NEW_PASSWORD = "a long enough password"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def api(cp: ControlPlane, tmp_path: Path, clock: Clock) -> Any:
    async with console_api(cp, tmp_path, clock) as client:
        yield client


async def owner_of_new_project(api: TestClient[Any, Any], cp: ControlPlane) -> tuple[str, Browser]:
    project_id = (await cp.create_project("acme", "free", 1)).id
    await person(cp, "owner@example.com", {project_id: "owner"})
    browser = Browser(api)
    await browser.sign_in("owner@example.com")
    return project_id, browser


async def invite(owner: Browser, email: str, role: str = "member") -> dict[str, Any]:
    answer = await owner.call("POST", "/api/v1/invitations", {"email": email, "role": role})
    assert answer.status == 201, answer.body
    return dict(answer.body["data"])


async def test_members_are_listed_and_managed_by_owners_only(
    api: TestClient[Any, Any], cp: ControlPlane
) -> None:
    project_id, owner = await owner_of_new_project(api, cp)
    bob = await person(cp, "bob@example.com", {project_id: "member"})
    member = Browser(api)
    await member.sign_in("bob@example.com")
    listed = await member.call("GET", "/api/v1/members")
    assert [(m["email"], m["role"]) for m in listed.body["data"]] == [
        ("owner@example.com", "owner"),
        ("bob@example.com", "member"),
    ]
    assert listed.body["hasMore"] is False
    refused = await member.call("PATCH", f"/api/v1/members/{bob.id}", {"role": "owner"})
    assert (refused.status, refused.code) == (403, "FORBIDDEN")
    changed = await owner.call("PATCH", f"/api/v1/members/{bob.id}", {"role": "viewer"})
    assert changed.status == 200
    assert changed.body["data"] == {
        "userId": bob.id, "email": "bob@example.com", "role": "viewer",
        "createdAt": listed.body["data"][1]["createdAt"],
    }  # fmt: skip
    as_viewer = await member.call("POST", "/api/v1/keys", {"name": "k", "scopes": ["*"]})
    assert as_viewer.code == "SCOPE_DENIED"  # the new role applies at once
    bad = await owner.call("PATCH", f"/api/v1/members/{bob.id}", {"role": "admin"})
    assert (bad.status, bad.code) == (400, "VALIDATION_ERROR")
    missing = await owner.call("PATCH", "/api/v1/members/usr_missing", {"role": "viewer"})
    assert (missing.status, missing.code) == (404, "NOT_FOUND")
    assert (await owner.call("DELETE", f"/api/v1/members/{bob.id}")).status == 204
    gone = await member.call("GET", "/api/v1/whoami")
    assert (gone.status, gone.code) == (404, "NOT_FOUND")  # no project left for this session


async def test_the_last_owner_cannot_leave_or_be_demoted(
    api: TestClient[Any, Any], cp: ControlPlane
) -> None:
    project_id, owner = await owner_of_new_project(api, cp)
    me = (await owner.call("GET", "/api/v1/session")).body["data"]["user"]["id"]
    demoted = await owner.call("PATCH", f"/api/v1/members/{me}", {"role": "member"})
    assert (demoted.status, demoted.code) == (409, "CONFLICT")
    left = await owner.call("DELETE", f"/api/v1/members/{me}")
    assert (left.status, left.code) == (409, "CONFLICT")
    other = await person(cp, "second@example.com", {project_id: "owner"})
    assert (await owner.call("PATCH", f"/api/v1/members/{me}", {"role": "member"})).status == 200
    assert (await owner.call("GET", "/api/v1/members")).status == 200  # still a member
    second = Browser(api)
    await second.sign_in("second@example.com")
    last = await second.call("DELETE", f"/api/v1/members/{other.id}")
    assert (last.status, last.code) == (409, "CONFLICT")


async def test_an_invitation_makes_a_new_user_once(
    api: TestClient[Any, Any], cp: ControlPlane
) -> None:
    project_id, owner = await owner_of_new_project(api, cp)
    created = await invite(owner, "New.Person@Example.com", "viewer")
    assert created["id"].startswith("inv_") and created["email"] == "new.person@example.com"
    assert created["url"].endswith(f"/invite#{created['token']}")
    pending = await owner.call("GET", "/api/v1/invitations")
    assert [i["id"] for i in pending.body["data"]] == [created["id"]]
    assert "token" not in pending.body["data"][0]
    visitor = Browser(api)
    looked = await visitor.call("GET", f"/api/v1/invitations/lookup?token={created['token']}")
    assert looked.body["data"] == {
        "email": "new.person@example.com", "projectName": "acme", "role": "viewer",
        "expiresAt": created["expiresAt"],
    }  # fmt: skip
    body = {"token": created["token"], "password": "short"}
    short = await visitor.call("POST", "/api/v1/invitations/accept", body)
    assert (short.status, short.body["error"]["details"][0]["field"]) == (400, "password")
    body["password"] = NEW_PASSWORD
    accepted = await visitor.call("POST", "/api/v1/invitations/accept", body)
    assert accepted.status == 200, accepted.body
    assert accepted.body["data"]["memberships"] == [
        {"projectId": project_id, "projectName": "acme", "role": "viewer"}
    ]
    me = await visitor.call("GET", "/api/v1/whoami")
    assert me.body["data"]["name"] == "new.person@example.com"
    again = await Browser(api).call("POST", "/api/v1/invitations/accept", body)
    assert (again.status, again.code) == (404, "NOT_FOUND")
    used = await Browser(api).call("GET", f"/api/v1/invitations/lookup?token={created['token']}")
    assert used.status == 404
    assert (await owner.call("GET", "/api/v1/invitations")).body["data"] == []
    await Browser(api).sign_in("new.person@example.com", NEW_PASSWORD)


async def test_an_existing_user_accepts_with_their_own_password(
    api: TestClient[Any, Any], cp: ControlPlane, clock: Clock
) -> None:
    _, owner = await owner_of_new_project(api, cp)
    elsewhere = (await cp.create_project("elsewhere", "pro", 1)).id
    await person(cp, "bob@example.com", {elsewhere: "owner"})
    created = await invite(owner, "bob@example.com")
    clock.advance(1)
    visitor = Browser(api)
    wrong = await visitor.call(
        "POST", "/api/v1/invitations/accept", {"token": created["token"], "password": "not it"}
    )
    assert (wrong.status, wrong.code) == (401, "UNAUTHENTICATED")
    right = await visitor.call(
        "POST", "/api/v1/invitations/accept", {"token": created["token"], "password": PASSWORD}
    )
    assert right.status == 200
    assert [(m["projectName"], m["role"]) for m in right.body["data"]["memberships"]] == [
        ("elsewhere", "owner"),
        ("acme", "member"),
    ]


async def test_invitations_expire_and_can_be_revoked(
    api: TestClient[Any, Any], cp: ControlPlane, clock: Clock
) -> None:
    _, owner = await owner_of_new_project(api, cp)
    revoked = await invite(owner, "one@example.com")
    assert (await owner.call("DELETE", f"/api/v1/invitations/{revoked['id']}")).status == 204
    assert (await owner.call("DELETE", f"/api/v1/invitations/{revoked['id']}")).status == 404
    lookup = await Browser(api).call("GET", f"/api/v1/invitations/lookup?token={revoked['token']}")
    assert lookup.status == 404
    expiring = await invite(owner, "two@example.com")
    clock.advance(167 * 3600)
    ok = await Browser(api).call("GET", f"/api/v1/invitations/lookup?token={expiring['token']}")
    assert ok.status == 200
    clock.advance(3600)
    late = await Browser(api).call(
        "POST", "/api/v1/invitations/accept", {"token": expiring["token"], "password": NEW_PASSWORD}
    )
    assert (late.status, late.code) == (404, "NOT_FOUND")
    assert await cp.find_user("two@example.com") is None


async def test_members_cannot_be_invited_twice_and_only_owners_invite(
    api: TestClient[Any, Any], cp: ControlPlane
) -> None:
    project_id, owner = await owner_of_new_project(api, cp)
    await person(cp, "bob@example.com", {project_id: "member"})
    twice = await owner.call(
        "POST", "/api/v1/invitations", {"email": "BOB@example.com", "role": "viewer"}
    )
    assert (twice.status, twice.code) == (409, "CONFLICT")
    bad = await owner.call(
        "POST", "/api/v1/invitations", {"email": "not-an-email", "role": "viewer"}
    )
    assert (bad.status, bad.body["error"]["details"][0]["field"]) == (400, "email")
    member = Browser(api)
    await member.sign_in("bob@example.com")
    for method, path in (("POST", "/api/v1/invitations"), ("GET", "/api/v1/invitations")):
        body = {"email": "x@example.com", "role": "viewer"}
        refused = await member.call(method, path, body if method == "POST" else None)
        assert (refused.status, refused.code) == (403, "FORBIDDEN")
