"""Keys, admin, readiness and subscription limits through the API's routes, in this process,
against SQLite and the machine's PostgreSQL."""

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from services.common.controlplane import ControlPlane, make_engine
from tests.integration.apiserver import ADMIN_TOKEN, deps_for, serving, settings_for

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

# The server runs in this process, where warnings are errors: the API keeps per-request values
# under plain string keys, which aiohttp only recommends against.
pytestmark = pytest.mark.filterwarnings("ignore::aiohttp.web_exceptions.NotAppKeyWarning")


@pytest.fixture(params=["sqlite", "postgres"])
async def cp(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ControlPlane]:
    if request.param == "sqlite":
        engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'cp.db'}")
    else:
        url, schema = request.getfixturevalue("pg_url")
        engine = make_engine(url, {"server_settings": {"search_path": schema}})
    plane = ControlPlane(engine)
    await plane.migrate(1)
    yield plane
    await plane.close()


@pytest.fixture
def sqlite_only(cp: ControlPlane) -> ControlPlane:
    if cp.engine.dialect.name != "sqlite":
        pytest.skip("the route logic is the same on PostgreSQL")
    return cp


@pytest.fixture
async def api(cp: ControlPlane, tmp_path: Path) -> AsyncIterator[TestClient[Any, Any]]:
    async with serving(deps_for(settings_for(tmp_path), cp)) as client:
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
