"""The API foundation over HTTP against the real stack (`codecourier up`)."""

import json

import aiohttp

from tests.e2e.helpers import call, new_key, new_project
from tests.processes import Stack

WHOAMI_FIELDS = {"keyId", "projectId", "name", "scopes", "createdAt", "lastUsedAt"}


async def test_admin_creates_a_project_with_an_all_scopes_key(session, stack: Stack) -> None:
    status, headers, body = await call(
        session,
        "POST",
        f"{stack.base_url}/admin/v1/projects",
        stack.admin_token,
        json={"name": "acme", "plan": "pro"},
    )
    assert status == 201
    project, key = body["data"]["project"], body["data"]["key"]
    assert project["id"].startswith("prj_") and project["plan"] == "pro"
    assert project["createdAt"].endswith("Z") and len(project["createdAt"]) == 24
    assert key["id"].startswith("kak_") and key["scopes"] == ["*"]
    assert key["secret"].startswith("cc_live_")
    assert headers["X-Request-ID"]


async def test_admin_api_needs_the_admin_token(session, stack: Stack) -> None:
    for token in [None, "wrong", "cc_live_" + "a" * 40]:
        status, _, body = await call(
            session, "POST", f"{stack.base_url}/admin/v1/projects", token, json={"name": "x"}
        )
        assert status == 401 and body["error"]["code"] == "UNAUTHENTICATED"


async def test_whoami_with_either_header_returns_exactly_the_contract_fields(
    session, stack
) -> None:
    project_id, secret = await new_project(session, stack)
    for headers in ({"Authorization": f"Bearer {secret}"}, {"x-api-key": secret}):
        status, _, body = await call(
            session, "GET", f"{stack.base_url}/api/v1/whoami", headers=headers
        )
        assert status == 200
        assert set(body) == {"data"}
        assert set(body["data"]) == WHOAMI_FIELDS
        assert body["data"]["projectId"] == project_id
        assert body["data"]["scopes"] == ["*"]
        assert body["data"]["lastUsedAt"] is not None


async def test_project_route_describes_the_keys_project(session, stack: Stack) -> None:
    project_id, secret = await new_project(session, stack, plan="team", name="teamproj")
    status, _, body = await call(session, "GET", f"{stack.base_url}/api/v1/project", secret)
    assert status == 200
    assert body["data"] == {
        "id": project_id,
        "name": "teamproj",
        "plan": "team",
        "createdAt": body["data"]["createdAt"],
    }


async def test_scope_denied_has_the_contract_message_and_request_id(session, stack) -> None:
    _, secret = await new_project(session, stack)
    reader = await new_key(session, stack, secret, ["keys:read"])
    status, headers, body = await call(
        session,
        "POST",
        f"{stack.base_url}/api/v1/keys",
        reader["secret"],
        json={"name": "x", "scopes": ["keys:read"]},
    )
    assert status == 403
    assert body["error"]["code"] == "SCOPE_DENIED"
    assert body["error"]["message"] == "This key does not have the required 'keys:write' scope."
    assert body["error"]["requestId"] == headers["X-Request-ID"]


async def test_a_key_cannot_grant_scopes_it_lacks(session, stack: Stack) -> None:
    _, secret = await new_project(session, stack)
    writer = await new_key(session, stack, secret, ["keys:write"])
    status, _, body = await call(
        session,
        "POST",
        f"{stack.base_url}/api/v1/keys",
        writer["secret"],
        json={"name": "escalate", "scopes": ["logs:read"]},
    )
    assert status == 403 and body["error"]["code"] == "SCOPE_DENIED"
    assert "'logs:read'" in body["error"]["message"]
    status, _, _ = await call(
        session,
        "POST",
        f"{stack.base_url}/api/v1/keys",
        writer["secret"],
        json={"name": "ok", "scopes": ["keys:write"]},
    )
    assert status == 201


async def test_well_formed_request_ids_are_echoed_and_bad_ones_replaced(session, stack) -> None:
    _, _, _ = await call(session, "GET", f"{stack.base_url}/healthz")
    _, headers, _ = await call(
        session, "GET", f"{stack.base_url}/healthz", headers={"X-Request-ID": "trace-1234abcd"}
    )
    assert headers["X-Request-ID"] == "trace-1234abcd"
    _, headers, _ = await call(
        session, "GET", f"{stack.base_url}/healthz", headers={"X-Request-ID": "bad id\twith spaces"}
    )
    assert headers["X-Request-ID"] != "bad id\twith spaces"
    assert len(headers["X-Request-ID"]) == 36


async def test_revoked_key_is_refused_on_the_next_request(session, stack: Stack) -> None:
    _, secret = await new_project(session, stack)
    victim = await new_key(session, stack, secret, ["keys:read"])
    assert (await call(session, "GET", f"{stack.base_url}/api/v1/whoami", victim["secret"]))[
        0
    ] == 200
    status, _, body = await call(
        session, "DELETE", f"{stack.base_url}/api/v1/keys/{victim['id']}", secret
    )
    assert status == 200 and body["data"]["id"] == victim["id"]
    status, _, body = await call(
        session, "GET", f"{stack.base_url}/api/v1/whoami", victim["secret"]
    )
    assert status == 401
    assert body["error"]["code"] == "UNAUTHENTICATED"
    assert "revoked" in body["error"]["message"]


async def test_another_projects_key_id_is_404(session, stack: Stack) -> None:
    _, mine = await new_project(session, stack)
    _, theirs = await new_project(session, stack)
    their_key = await new_key(session, stack, theirs, ["logs:read"])
    status, _, body = await call(
        session, "DELETE", f"{stack.base_url}/api/v1/keys/{their_key['id']}", mine
    )
    assert status == 404 and body["error"]["code"] == "NOT_FOUND"
    assert (await call(session, "GET", f"{stack.base_url}/api/v1/whoami", their_key["secret"]))[
        0
    ] == 200


async def test_malformed_json_is_a_validation_error_with_details(session, stack: Stack) -> None:
    _, secret = await new_project(session, stack)
    status, _, body = await call(
        session,
        "POST",
        f"{stack.base_url}/api/v1/keys",
        secret,
        data=b'{"name": "x", "scopes": [',
        headers={"Content-Type": "application/json"},
    )
    assert status == 400
    assert body["error"]["code"] == "VALIDATION_ERROR"
    assert body["error"]["details"][0]["field"] == "body"
    status, _, body = await call(
        session,
        "POST",
        f"{stack.base_url}/api/v1/keys",
        secret,
        json={"name": "x", "scopes": ["logs:read", "root"]},
    )
    assert status == 400
    assert body["error"]["details"] == [
        {"field": "scopes[1]", "message": body["error"]["details"][0]["message"]}
    ]


async def test_non_json_body_is_415_and_oversized_body_is_413(session, stack: Stack) -> None:
    _, secret = await new_project(session, stack)
    status, _, body = await call(
        session,
        "POST",
        f"{stack.base_url}/api/v1/keys",
        secret,
        data=b"name=x",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert status == 415 and body["error"]["code"] == "UNSUPPORTED_MEDIA_TYPE"
    huge = b'{"name": "' + b"x" * (1024 * 1024 + 10) + b'", "scopes": ["*"]}'
    status, _, body = await call(
        session,
        "POST",
        f"{stack.base_url}/api/v1/keys",
        secret,
        data=huge,
        headers={"Content-Type": "application/json"},
    )
    assert status == 413 and body["error"]["code"] == "PAYLOAD_TOO_LARGE"


async def test_unknown_route_and_wrong_method_use_the_envelope(session, stack: Stack) -> None:
    status, headers, body = await call(session, "GET", f"{stack.base_url}/api/v1/nothing-here")
    assert status == 404 and body["error"]["code"] == "NOT_FOUND"
    assert body["error"]["requestId"] == headers["X-Request-ID"]
    status, headers, body = await call(session, "PUT", f"{stack.base_url}/api/v1/whoami")
    assert status == 405 and body["error"]["code"] == "METHOD_NOT_ALLOWED"
    assert headers["Allow"] == "GET"


async def test_missing_malformed_and_unknown_keys_say_which(session, stack: Stack) -> None:
    url = f"{stack.base_url}/api/v1/whoami"
    cases = {None: "Missing", "not-a-key": "Malformed", "cc_live_" + "Z" * 40: "Unknown"}
    for key, word in cases.items():
        status, _, body = await call(session, "GET", url, key)
        assert status == 401 and body["error"]["code"] == "UNAUTHENTICATED"
        assert word in body["error"]["message"]


async def test_expired_key_is_refused(session, stack: Stack) -> None:
    import asyncio
    from datetime import UTC, datetime, timedelta

    _, secret = await new_project(session, stack)
    soon = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    status, _, body = await call(
        session,
        "POST",
        f"{stack.base_url}/api/v1/keys",
        secret,
        json={"name": "short", "scopes": ["keys:read"], "expiresAt": soon},
    )
    assert status == 201
    await asyncio.sleep(1.2)
    status, _, err = await call(
        session, "GET", f"{stack.base_url}/api/v1/whoami", body["data"]["secret"]
    )
    assert status == 401 and "expired" in err["error"]["message"]
    past = (datetime.now(UTC) - timedelta(seconds=5)).isoformat()
    status, _, err = await call(
        session,
        "POST",
        f"{stack.base_url}/api/v1/keys",
        secret,
        json={"name": "p", "scopes": ["keys:read"], "expiresAt": past},
    )
    assert status == 400 and err["error"]["details"][0]["field"] == "expiresAt"


async def test_key_list_pages_with_a_signed_cursor_and_never_shows_secrets(session, stack) -> None:
    _, secret = await new_project(session, stack)
    for i in range(4):
        await new_key(session, stack, secret, ["logs:read"], name=f"k{i}")
    seen, cursor = [], None
    while True:
        url = f"{stack.base_url}/api/v1/keys?limit=2" + (f"&cursor={cursor}" if cursor else "")
        status, _, body = await call(session, "GET", url, secret)
        assert status == 200
        assert all("secret" not in item and "secretHash" not in item for item in body["data"])
        seen += [item["name"] for item in body["data"]]
        cursor = body["nextCursor"]
        if not body["hasMore"]:
            assert cursor is None
            break
    assert seen == ["default", "k0", "k1", "k2", "k3"]
    status, _, body = await call(
        session, "GET", f"{stack.base_url}/api/v1/keys?cursor=abc.def", secret
    )
    assert status == 400 and body["error"]["code"] == "INVALID_CURSOR"
    status, _, body = await call(session, "GET", f"{stack.base_url}/api/v1/keys?limit=0", secret)
    assert status == 400 and body["error"]["details"][0]["field"] == "limit"
    status, _, body = await call(session, "GET", f"{stack.base_url}/api/v1/keys?colour=red", secret)
    assert status == 400 and body["error"]["details"][0]["field"] == "colour"


async def test_another_projects_cursor_is_invalid(session, stack: Stack) -> None:
    _, mine = await new_project(session, stack)
    _, theirs = await new_project(session, stack)
    for _ in range(2):
        await new_key(session, stack, theirs, ["logs:read"])
    _, _, body = await call(session, "GET", f"{stack.base_url}/api/v1/keys?limit=1", theirs)
    status, _, err = await call(
        session, "GET", f"{stack.base_url}/api/v1/keys?cursor={body['nextCursor']}", mine
    )
    assert status == 400 and err["error"]["code"] == "INVALID_CURSOR"


async def test_operations_endpoints(session, stack: Stack) -> None:
    status, _, body = await call(session, "GET", f"{stack.base_url}/healthz")
    assert status == 200 and body["data"]["status"] == "ok"
    status, _, body = await call(session, "GET", f"{stack.base_url}/readyz")
    assert status == 200 and body["data"]["checks"] == {
        "database": "ok",
        "clickhouse": "ok",
        "kafka": "ok",
    }
    async with session.get(f"{stack.base_url}/metrics") as response:
        text = await response.text()
    assert response.status == 200 and "cc_http_requests_total" in text
    status, _, body = await call(session, "GET", f"{stack.base_url}/api/v1/openapi.json")
    assert status == 200 and body["openapi"] == "3.1.0" and "/api/v1/whoami" in body["paths"]


async def test_plan_change_by_the_operator(session, stack: Stack) -> None:
    project_id, secret = await new_project(session, stack, plan="free")
    status, _, body = await call(
        session,
        "PATCH",
        f"{stack.base_url}/admin/v1/projects/{project_id}",
        stack.admin_token,
        json={"plan": "team"},
    )
    assert status == 200 and body["data"]["plan"] == "team"
    _, headers, _ = await call(session, "GET", f"{stack.base_url}/api/v1/whoami", secret)
    assert headers["X-RateLimit-Limit"] == "60"
    status, _, _ = await call(
        session,
        "PATCH",
        f"{stack.base_url}/admin/v1/projects/prj_nope",
        stack.admin_token,
        json={"plan": "team"},
    )
    assert status == 404


async def test_up_saves_console_credentials_that_sign_in(stack: Stack) -> None:
    console = json.loads((stack.data_dir / "local.json").read_text())["console"]
    assert console["url"] == f"{stack.base_url}/"
    assert console["email"] == "owner@codecourier.local" and len(console["password"]) >= 12
    # A browser's cookie jar (loopback addresses allowed, as browsers do).
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        credentials = {"email": console["email"], "password": console["password"]}
        async with browser.post(f"{stack.base_url}/api/v1/session", json=credentials) as response:
            assert response.status == 200
            signed_in = (await response.json())["data"]
        assert signed_in["memberships"] == [
            {"projectId": stack.project_id, "projectName": "local", "role": "owner"}
        ]
        async with browser.get(f"{stack.base_url}/api/v1/whoami") as response:
            me = (await response.json())["data"]
            assert response.headers["X-RateLimit-Limit"] == "600"  # the console's bucket
        assert (me["projectId"], me["name"]) == (stack.project_id, console["email"])
        csrf = {"X-CSRF-Token": signed_in["csrfToken"]}
        key = {"name": "from the console", "scopes": ["logs:read"]}
        async with browser.post(
            f"{stack.base_url}/api/v1/keys", json=key, headers=csrf
        ) as response:
            assert response.status == 201
        async with browser.delete(f"{stack.base_url}/api/v1/session", headers=csrf) as response:
            assert response.status == 204
        async with browser.get(f"{stack.base_url}/api/v1/whoami") as response:
            assert response.status == 401
