"""Keys, admin, readiness and subscription limits through the API's routes, in this process,
against SQLite and the machine's PostgreSQL."""

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from services.common import kafka
from services.common.controlplane import ControlPlane
from tests.integration.apiserver import ADMIN_TOKEN, deps_for, serving, settings_for
from tests.integration.conftest import control_plane_engine

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

# The server runs in this process, where warnings are errors: the API keeps per-request values
# under plain string keys, which aiohttp only recommends against.
pytestmark = pytest.mark.filterwarnings("ignore::aiohttp.web_exceptions.NotAppKeyWarning")


@pytest.fixture
async def sqlite_cp(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ControlPlane]:
    """For route logic that does not depend on the database."""
    plane = ControlPlane(control_plane_engine(request, "sqlite", tmp_path))
    await plane.migrate(1)
    yield plane
    await plane.close()


@pytest.fixture
async def api(cp: ControlPlane, tmp_path: Path) -> AsyncIterator[TestClient[Any, Any]]:
    async with serving(deps_for(settings_for(tmp_path), cp)) as client:
        yield client


@pytest.fixture
async def sqlite_api(
    sqlite_cp: ControlPlane, tmp_path: Path
) -> AsyncIterator[TestClient[Any, Any]]:
    async with serving(deps_for(settings_for(tmp_path), sqlite_cp)) as client:
        yield client


async def new_project(api: TestClient[Any, Any], plan: str = "enterprise") -> tuple[str, str]:
    response = await api.post("/admin/v1/projects", json={"name": "p", "plan": plan}, headers=ADMIN)
    body = await response.json()
    assert response.status == 201, body
    return body["data"]["project"]["id"], body["data"]["key"]["secret"]


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


# ---- the subscription cap ----------------------------------------------------------------------


async def test_twenty_concurrent_creates_end_with_exactly_ten(api: TestClient[Any, Any]) -> None:
    _, secret = await new_project(api)
    body = {
        "notificationType": "webhook",
        "allWorkflows": True,
        "webhookConfig": {"url": "https://hooks.example.com/codecourier"},
    }

    async def create() -> int:
        response = await api.post("/api/v1/notifications", json=body, headers=bearer(secret))
        return response.status

    statuses = await asyncio.gather(*(create() for _ in range(20)))
    assert sorted(statuses) == [201] * 10 + [409] * 10
    listed = await (await api.get("/api/v1/notifications?limit=100", headers=bearer(secret))).json()
    assert len(listed["data"]) == 10


# ---- readiness ---------------------------------------------------------------------------------


async def test_readyz_is_cached_shares_one_kafka_client_and_names_no_address(
    sqlite_cp: ControlPlane, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clients: list[object] = []
    real = kafka.AIOKafkaAdminClient

    def counting(**kwargs: Any) -> Any:
        clients.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(kafka, "AIOKafkaAdminClient", counting)
    deps = deps_for(settings_for(tmp_path), sqlite_cp)
    async with serving(deps) as client:
        responses = await asyncio.gather(*(client.get("/readyz") for _ in range(20)))
        responses.append(await client.get("/readyz"))
        bodies = [await r.text() for r in responses]
    assert {r.status for r in responses} == {503}
    assert len(clients) == 1
    port = deps.kafka_bootstrap.rsplit(":", 1)[1]
    for text in bodies:
        for leak in (port, "127.0.0.1", "10.1.2.3", "ConnectionError", "Kafka"):
            assert leak not in text
    details = json.loads(bodies[0])["error"]["details"]
    assert details == [
        {"field": "clickhouse", "message": "unavailable"},
        {"field": "kafka", "message": "unavailable"},
    ]


# ---- the admin token ---------------------------------------------------------------------------


async def test_wrong_admin_tokens_are_throttled_per_address(
    sqlite_api: TestClient[Any, Any],
) -> None:
    api = sqlite_api
    await new_project(api)  # a right token costs nothing
    wrong = {"Authorization": "Bearer cc_admin_guess"}
    statuses = []
    for _ in range(11):
        response = await api.post("/admin/v1/projects", json={"name": "x"}, headers=wrong)
        statuses.append(response.status)
    assert statuses == [401] * 10 + [429]
    assert int(response.headers["Retry-After"]) >= 1
    body = await response.json()
    assert body["error"]["code"] == "RATE_LIMITED"
    blocked = await api.post("/admin/v1/projects", json={"name": "x"}, headers=ADMIN)
    assert blocked.status == 429  # the address is blocked until its bucket refills


async def test_refused_api_keys_are_throttled_per_address_without_lookups(
    sqlite_api: TestClient[Any, Any], sqlite_cp: ControlPlane
) -> None:
    api = sqlite_api
    _, secret = await new_project(api)
    lookups = 0
    find_key = sqlite_cp.find_key

    async def counted(digest: str) -> Any:
        nonlocal lookups
        lookups += 1
        return await find_key(digest)

    sqlite_cp.find_key = counted  # type: ignore[method-assign]
    statuses = []
    for i in range(101):  # a new random key each time: the miss cache cannot help
        guess = {"Authorization": f"Bearer cc_live_{i:0>40}"}
        response = await api.get("/api/v1/whoami", headers=guess)
        statuses.append(response.status)
    assert statuses == [401] * 100 + [429]
    assert int(response.headers["Retry-After"]) >= 1
    assert (await response.json())["error"]["code"] == "RATE_LIMITED"
    before = lookups
    for i in range(20):
        guess = {"Authorization": f"Bearer cc_live_{i:1>40}"}
        assert (await api.get("/api/v1/whoami", headers=guess)).status == 429
    assert lookups == before  # a blocked address costs the database nothing
    # the address is blocked until its bucket refills, whatever key it sends
    mine = await api.get("/api/v1/whoami", headers={"Authorization": f"Bearer {secret}"})
    assert mine.status == 429


async def test_admin_issues_a_key_for_an_existing_project(api: TestClient[Any, Any]) -> None:
    project_id, secret = await new_project(api)
    revoked = await api.delete(
        f"/api/v1/keys/{(await whoami(api, secret))['keyId']}", headers=bearer(secret)
    )
    assert revoked.status == 200  # the project's only key is gone: locked out
    response = await api.post(
        f"/admin/v1/projects/{project_id}/keys",
        json={"name": "recovery", "scopes": ["*"]},
        headers=ADMIN,
    )
    assert response.status == 201
    key = (await response.json())["data"]
    assert key["projectId"] == project_id and key["scopes"] == ["*"]
    assert (await whoami(api, key["secret"]))["projectId"] == project_id
    missing = await api.post(
        "/admin/v1/projects/prj_missing/keys", json={"name": "x", "scopes": ["*"]}, headers=ADMIN
    )
    assert missing.status == 404
    anonymous = await api.post(
        f"/admin/v1/projects/{project_id}/keys",
        json={"name": "x", "scopes": ["*"]},
        headers=bearer(key["secret"]),
    )
    assert anonymous.status == 401


async def whoami(api: TestClient[Any, Any], secret: str) -> dict[str, Any]:
    response = await api.get("/api/v1/whoami", headers=bearer(secret))
    assert response.status == 200, await response.text()
    return dict((await response.json())["data"])


# ---- what a key may do to keys -----------------------------------------------------------------


async def create_key(
    api: TestClient[Any, Any], secret: str, scopes: list[str], **extra: Any
) -> tuple[int, dict[str, Any]]:
    body = {"name": "k", "scopes": scopes, **extra}
    response = await api.post("/api/v1/keys", json=body, headers=bearer(secret))
    return response.status, await response.json()


async def test_a_key_revokes_only_keys_within_its_own_scopes(
    sqlite_api: TestClient[Any, Any],
) -> None:
    api = sqlite_api
    _, root = await new_project(api)
    root_id = (await whoami(api, root))["keyId"]
    _, manager = await create_key(api, root, ["keys:read", "keys:write"])
    _, reader = await create_key(api, root, ["keys:read"])
    _, logs = await create_key(api, root, ["logs:read"])
    manager_secret = manager["data"]["secret"]
    for target in (root_id, logs["data"]["id"]):
        response = await api.delete(f"/api/v1/keys/{target}", headers=bearer(manager_secret))
        body = await response.json()
        assert response.status == 403 and body["error"]["code"] == "FORBIDDEN"
        assert f"cannot revoke {target}" in body["error"]["message"]
    assert (await whoami(api, root))["keyId"] == root_id  # still alive
    response = await api.delete(
        f"/api/v1/keys/{reader['data']['id']}", headers=bearer(manager_secret)
    )
    assert response.status == 200
    gone = await api.delete("/api/v1/keys/kak_missing", headers=bearer(manager_secret))
    assert gone.status == 404


async def test_a_key_cannot_mint_a_key_that_outlives_it(
    sqlite_api: TestClient[Any, Any],
) -> None:
    api = sqlite_api
    _, root = await new_project(api)
    soon = datetime.now(UTC) + timedelta(hours=1)
    status, made = await create_key(
        api, root, ["keys:write"], expiresAt=soon.isoformat().replace("+00:00", "Z")
    )
    assert status == 201
    short_lived = made["data"]["secret"]
    later = (soon + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    status, body = await create_key(api, short_lived, ["keys:write"], expiresAt=later)
    assert status == 403 and body["error"]["code"] == "FORBIDDEN"
    assert "cannot create a key that outlives it" in body["error"]["message"]
    status, inherited = await create_key(api, short_lived, ["keys:write"])
    assert status == 201 and inherited["data"]["expiresAt"] == made["data"]["expiresAt"]
    earlier = (soon - timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
    status, shorter = await create_key(api, short_lived, ["keys:write"], expiresAt=earlier)
    assert status == 201 and shorter["data"]["expiresAt"] < made["data"]["expiresAt"]
