"""Console sessions through the API's routes in this process, on SQLite and PostgreSQL: a
session acts with its role's scopes on the ordinary routes, CSRF, expiry, sign-out, password
changes, sign-in throttling and the project header."""

from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from services.common.controlplane import ControlPlane
from tests.integration.apiserver import ADMIN_TOKEN
from tests.integration.console import (
    PASSWORD,
    Browser,
    Clock,
    cheap_hashes,  # noqa: F401 - the autouse fixture
    console_api,
    person,
)

pytestmark = pytest.mark.filterwarnings("ignore::aiohttp.web_exceptions.NotAppKeyWarning")

HOUR_S = 3600.0


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def api(cp: ControlPlane, tmp_path: Path, clock: Clock) -> Any:
    async with console_api(cp, tmp_path, clock) as client:
        yield client


async def project(cp: ControlPlane, name: str = "acme", plan: str = "free") -> str:
    return (await cp.create_project(name, plan, 1)).id


async def test_a_viewer_reads_with_the_read_scopes_only(
    api: TestClient[Any, Any], cp: ControlPlane
) -> None:
    project_id = await project(cp)
    viewer = await person(cp, "Viewer@Example.com", {project_id: "viewer"})
    browser = Browser(api)
    signed = await browser.sign_in("VIEWER@example.com")
    assert signed.body["data"]["user"] == {"id": viewer.id, "email": "viewer@example.com"}
    assert signed.body["data"]["memberships"] == [
        {"projectId": project_id, "projectName": "acme", "role": "viewer"}
    ]
    assert signed.body["data"]["csrfToken"] == browser.cookies["cc_csrf"]
    me = await browser.call("GET", "/api/v1/whoami")
    assert me.status == 200
    assert (me.body["data"]["keyId"], me.body["data"]["name"]) == (viewer.id, viewer.email)
    assert me.body["data"]["projectId"] == project_id
    assert (
        "keys:read" in me.body["data"]["scopes"] and "keys:write" not in me.body["data"]["scopes"]
    )
    assert (await browser.call("GET", "/api/v1/keys")).status == 200
    denied = await browser.call("POST", "/api/v1/keys", {"name": "ci", "scopes": ["logs:read"]})
    assert (denied.status, denied.code) == (403, "SCOPE_DENIED")
    assert denied.body["error"]["message"] == (
        "The viewer role does not have the required 'keys:write' scope."
    )


async def test_a_member_creates_keys_on_the_console_bucket(
    api: TestClient[Any, Any], cp: ControlPlane
) -> None:
    project_id = await project(cp, plan="free")  # the plan allows 20 in a burst
    await person(cp, "member@example.com", {project_id: "member"})
    browser = Browser(api)
    await browser.sign_in("member@example.com")
    created = await browser.call("POST", "/api/v1/keys", {"name": "ci", "scopes": ["*"]})
    assert created.status == 201, created.body
    assert created.body["data"]["projectId"] == project_id
    for _ in range(25):
        listed = await browser.call("GET", "/api/v1/keys")
        assert listed.status == 200
    assert listed.headers["X-RateLimit-Limit"] == "600"


async def test_state_changes_need_the_csrf_token_and_the_own_origin(
    api: TestClient[Any, Any], cp: ControlPlane
) -> None:
    project_id = await project(cp)
    await person(cp, "member@example.com", {project_id: "member"})
    browser = Browser(api)
    await browser.sign_in("member@example.com")
    body = {"name": "ci", "scopes": ["logs:read"]}
    own = f"http://{api.host}:{api.port}"
    refused = [
        await browser.call("POST", "/api/v1/keys", body, csrf=False),
        await browser.call("POST", "/api/v1/keys", body, **{"X-CSRF-Token": "forged"}),
        await browser.call("POST", "/api/v1/keys", body, Origin="https://evil.example"),
        await browser.call("POST", "/api/v1/keys", body, Origin="null"),
        await browser.call("POST", "/api/v1/keys", body, Referer="https://evil.example/x"),
        await browser.call("POST", "/api/v1/keys", body, **{"Sec-Fetch-Site": "cross-site"}),
    ]
    assert [(a.status, a.code) for a in refused] == [(403, "FORBIDDEN")] * 6
    assert "X-CSRF-Token" in refused[0].body["error"]["message"]
    accepted = await browser.call(
        "POST", "/api/v1/keys", body, Origin=own, **{"Sec-Fetch-Site": "same-origin"}
    )
    assert accepted.status == 201
    assert (await browser.call("GET", "/api/v1/keys", csrf=False)).status == 200  # reads need none
    key = accepted.body["data"]["secret"]
    with_key = await browser.call(  # a key request, cookies or not: no CSRF involved
        "GET", "/api/v1/whoami", csrf=False, Authorization=f"Bearer {key}"
    )
    assert with_key.body["data"]["keyId"] == accepted.body["data"]["id"]


async def test_the_public_base_url_is_an_own_origin(cp: ControlPlane, tmp_path: Path) -> None:
    project_id = await project(cp)
    await person(cp, "member@example.com", {project_id: "member"})
    clock = Clock()
    async with console_api(
        cp, tmp_path, clock, public_base_url="https://console.example.com"
    ) as api:
        browser = Browser(api)
        signed = await browser.sign_in("member@example.com")
        assert "Secure" in signed.headers.getall("Set-Cookie")[0]
        body = {"name": "ci", "scopes": ["logs:read"]}
        ok = await browser.call("POST", "/api/v1/keys", body, Origin="https://console.example.com")
        assert ok.status == 201


async def test_sessions_expire_when_idle_and_after_seven_days(
    api: TestClient[Any, Any], cp: ControlPlane, clock: Clock
) -> None:
    project_id = await project(cp)
    await person(cp, "ada@example.com", {project_id: "owner"})
    idle, busy = Browser(api), Browser(api)
    await idle.sign_in("ada@example.com")
    await busy.sign_in("ada@example.com")
    clock.advance(11 * HOUR_S)
    assert (await busy.call("GET", "/api/v1/session")).status == 200
    clock.advance(1.01 * HOUR_S)
    expired = await idle.call("GET", "/api/v1/whoami")
    assert (expired.status, expired.code) == (401, "UNAUTHENTICATED")
    assert "expired" in expired.body["error"]["message"]
    for _ in range(14):  # used every 11 hours: alive until 7 days after sign-in
        assert (await busy.call("GET", "/api/v1/whoami")).status == 200
        clock.advance(11 * HOUR_S)
    assert (await busy.call("GET", "/api/v1/whoami")).status == 200  # 2 h before the end
    clock.advance(2 * HOUR_S)  # far from idle, but 7 days after sign-in
    assert (await busy.call("GET", "/api/v1/whoami")).status == 401


async def test_sign_out_ends_the_session_and_clears_the_cookies(
    api: TestClient[Any, Any], cp: ControlPlane
) -> None:
    project_id = await project(cp)
    await person(cp, "ada@example.com", {project_id: "owner"})
    browser = Browser(api)
    await browser.sign_in("ada@example.com")
    kept = dict(browser.cookies)
    assert (await browser.call("DELETE", "/api/v1/session", csrf=False)).status == 403
    signed_out = await browser.call("DELETE", "/api/v1/session")
    assert signed_out.status == 204
    assert browser.cookies == {}
    stolen = Browser(api, kept)  # the old cookie is worthless now
    after = await stolen.call("GET", "/api/v1/whoami")
    assert (after.status, after.code) == (401, "UNAUTHENTICATED")
    assert (await Browser(api).call("GET", "/api/v1/session")).status == 401


async def test_cookie_attributes(api: TestClient[Any, Any], cp: ControlPlane) -> None:
    project_id = await project(cp)
    await person(cp, "ada@example.com", {project_id: "owner"})
    signed = await Browser(api).sign_in("ada@example.com")
    session, csrf = sorted(signed.headers.getall("Set-Cookie"), reverse=True)
    assert session.startswith("cc_session=") and csrf.startswith("cc_csrf=")
    for attribute in ("HttpOnly", "SameSite=Lax", "Path=/"):
        assert attribute in session
    assert "SameSite=Lax" in csrf and "Path=/" in csrf and "HttpOnly" not in csrf
    assert "Secure" not in session  # plain http, no https public URL


async def test_a_password_change_ends_the_other_sessions(
    api: TestClient[Any, Any], cp: ControlPlane
) -> None:
    project_id = await project(cp)
    await person(cp, "ada@example.com", {project_id: "owner"})
    here, there = Browser(api), Browser(api)
    await here.sign_in("ada@example.com")
    await there.sign_in("ada@example.com")
    new = "a brand new passphrase"
    wrong = await here.call(
        "POST", "/api/v1/session/password", {"currentPassword": "nope", "newPassword": new}
    )
    assert (wrong.status, wrong.body["error"]["details"][0]["field"]) == (400, "currentPassword")
    short = await here.call(
        "POST", "/api/v1/session/password", {"currentPassword": PASSWORD, "newPassword": "short"}
    )
    assert (short.status, short.body["error"]["details"][0]["field"]) == (400, "newPassword")
    changed = await here.call(
        "POST", "/api/v1/session/password", {"currentPassword": PASSWORD, "newPassword": new}
    )
    assert changed.status == 204
    assert (await here.call("GET", "/api/v1/whoami")).status == 200
    assert (await there.call("GET", "/api/v1/whoami")).status == 401
    old = await Browser(api).call(
        "POST", "/api/v1/session", {"email": "ada@example.com", "password": PASSWORD}
    )
    assert old.status == 401
    await Browser(api).sign_in("ada@example.com", new)


async def test_unknown_email_and_wrong_password_answer_alike(
    api: TestClient[Any, Any], cp: ControlPlane
) -> None:
    project_id = await project(cp)
    await person(cp, "ada@example.com", {project_id: "owner"})
    answers = [
        await Browser(api).call("POST", "/api/v1/session", {"email": email, "password": password})
        for email, password in (
            ("ada@example.com", "wrong password"),
            ("bob@example.com", PASSWORD),
        )
    ]
    for answer in answers:
        del answer.body["error"]["requestId"]
    assert answers[0].status == answers[1].status == 401
    assert (
        answers[0].body
        == answers[1].body
        == {"error": {"code": "UNAUTHENTICATED", "message": "Incorrect email or password."}}
    )
    assert answers[0].cookies == answers[1].cookies == {}


async def test_sign_in_failures_are_throttled_per_account(
    api: TestClient[Any, Any], cp: ControlPlane
) -> None:
    project_id = await project(cp)
    await person(cp, "ada@example.com", {project_id: "owner"})
    await Browser(api).sign_in("ada@example.com")  # a right password costs nothing
    statuses = []
    for _ in range(6):
        answer = await Browser(api).call(
            "POST", "/api/v1/session", {"email": "ada@example.com", "password": "guess guess"}
        )
        statuses.append(answer.status)
    assert statuses == [401] * 5 + [429]
    right = await Browser(api).call(
        "POST", "/api/v1/session", {"email": "ada@example.com", "password": PASSWORD}
    )
    assert (right.status, right.code) == (429, "RATE_LIMITED")
    assert int(right.headers["Retry-After"]) >= 1
    assert right.cookies == {}


async def test_sign_in_failures_are_throttled_per_address(
    api: TestClient[Any, Any], cp: ControlPlane
) -> None:
    project_id = await project(cp)
    await person(cp, "ada@example.com", {project_id: "owner"})
    statuses = []
    for i in range(21):  # a new account each time: only the address limit applies
        answer = await Browser(api).call(
            "POST", "/api/v1/session", {"email": f"user{i}@example.com", "password": "guess"}
        )
        statuses.append(answer.status)
    assert statuses == [401] * 20 + [429]
    assert int(answer.headers["Retry-After"]) >= 1
    ada = await Browser(api).call(
        "POST", "/api/v1/session", {"email": "ada@example.com", "password": PASSWORD}
    )
    assert ada.status == 429


async def test_the_project_header_chooses_among_memberships(
    api: TestClient[Any, Any], cp: ControlPlane
) -> None:
    first, second, foreign = await project(cp, "a"), await project(cp, "b"), await project(cp, "c")
    await person(cp, "ada@example.com", {first: "viewer", second: "owner"})
    browser = Browser(api)
    await browser.sign_in("ada@example.com")
    default = await browser.call("GET", "/api/v1/whoami")
    assert default.body["data"]["projectId"] == first  # the oldest membership
    chosen = await browser.call("GET", "/api/v1/project", **{"X-Project-Id": second})
    assert chosen.body["data"]["id"] == second
    owner = await browser.call("GET", "/api/v1/whoami", **{"X-Project-Id": second})
    assert owner.body["data"]["scopes"] == ["*"]
    other = await browser.call("GET", "/api/v1/whoami", **{"X-Project-Id": foreign})
    assert (other.status, other.code) == (404, "NOT_FOUND")


async def test_people_routes_refuse_keys_and_need_a_session(
    api: TestClient[Any, Any], cp: ControlPlane
) -> None:
    created = await api.post(
        "/admin/v1/projects",
        json={"name": "p", "plan": "free"},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    key = (await created.json())["data"]["key"]["secret"]
    auth = {"Authorization": f"Bearer {key}"}
    for method, path in (
        ("GET", "/api/v1/session"),
        ("GET", "/api/v1/members"),
        ("POST", "/api/v1/invitations"),
    ):
        answer = await Browser(api).call(
            method, path, {"email": "x@example.com", "role": "member"}, **auth
        )
        assert (answer.status, answer.code) == (403, "FORBIDDEN"), (method, path)
    nobody = await Browser(api).call("GET", "/api/v1/members")
    assert (nobody.status, nobody.code) == (401, "UNAUTHENTICATED")
    forged = await Browser(api, {"cc_session": "x" * 43}).call("GET", "/api/v1/whoami")
    assert (forged.status, forged.code) == (401, "UNAUTHENTICATED")
