"""The API's routes in this process over real HTTP, on a real control plane, without Kafka or
ClickHouse: for the routes that need neither (keys, admin, readiness, subscriptions)."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from services import wiring
from services.api.app import build_app
from services.api.deps import Deps
from services.common.config import Settings
from services.common.controlplane import ControlPlane
from services.common.cursor import derive_key
from services.common.errors import Unavailable
from services.common.processes import free_port
from services.common.ratelimit import MemoryRateLimiter, RateLimiter
from services.common.sealing import sealing_key

SECRET_KEY = "api-test-secret-key-0123456789-abcdef"
ADMIN_TOKEN = "cc_admin_test_token_0123456789"


class NoClickHouse:
    """A ClickHouse that is down."""

    async def ping(self) -> None:
        raise Unavailable("clickhouse unreachable at http://10.1.2.3:8123: ConnectionError")

    async def rows(self, *_args: Any, **_kwargs: Any) -> list[Any]:
        return []


class PartitionsOnly:
    """A producer that only knows the partition count (the outbox relay is not running)."""

    async def partitions_for(self, _topic: str) -> set[int]:
        return {0, 1}


def settings_for(data_dir: Path, **overrides: Any) -> Settings:
    """Settings for an in-process API."""
    fields: dict[str, Any] = {
        "data_dir": data_dir,
        "clickhouse_url": "",
        "database_url": "",
        "secret_key": SECRET_KEY,
        "admin_token": ADMIN_TOKEN,
        "egress_allow_cidrs": (),
    }
    return Settings(**(fields | overrides))


def deps_for(
    settings: Settings, cp: ControlPlane, limiter: RateLimiter | None = None, **extra: Any
) -> Deps:
    """The API's adapters around a real control plane."""
    return Deps(
        settings=settings,
        controlplane=cp,
        auth=wiring.key_authenticator(settings, cp),
        limiter=limiter or MemoryRateLimiter(),
        clickhouse=NoClickHouse(),  # type: ignore[arg-type]
        kafka_bootstrap=f"127.0.0.1:{free_port()}",
        cursor_key=derive_key(SECRET_KEY, "cursor"),
        sealing_key=sealing_key(SECRET_KEY),
        producer=PartitionsOnly(),  # type: ignore[arg-type]
        visibility=None,  # type: ignore[arg-type]
        **extra,
    )


@asynccontextmanager
async def serving(deps: Deps, **client_options: Any) -> AsyncIterator[TestClient[Any, Any]]:
    """A client of the API's routes served on a loopback port."""
    server = TestServer(build_app(deps, background=False))
    async with TestClient(server, **client_options) as client:
        yield client


async def admin_project(
    client: TestClient[Any, Any], plan: str = "enterprise"
) -> tuple[str, dict[str, str]]:
    """A project made through the admin API: (its id, headers with its all-scopes key)."""
    response = await client.post(
        "/admin/v1/projects",
        json={"name": "p", "plan": plan},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    body = await response.json()
    assert response.status == 201, body
    return body["data"]["project"]["id"], {
        "Authorization": f"Bearer {body['data']['key']['secret']}"
    }
