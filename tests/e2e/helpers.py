"""HTTP helpers for tests against a running stack."""

import io
from typing import Any

import aiohttp

from tests.conftest import Stack


async def call(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    key: str | None = None,
    json: Any = None,
    headers: dict[str, str] | None = None,
    data: bytes | None = None,
) -> tuple[int, dict[str, Any], Any]:
    """One request; returns (status, headers, decoded JSON body or None)."""
    sent = dict(headers or {})
    if key is not None:
        sent.setdefault("Authorization", f"Bearer {key}")
    payload = io.BytesIO(data) if data is not None else None
    async with session.request(method, url, json=json, data=payload, headers=sent) as response:
        body = await response.json(content_type=None) if await response.read() else None
        return response.status, dict(response.headers), body


async def new_project(
    session: aiohttp.ClientSession, stack: Stack, plan: str = "enterprise", name: str = "e2e"
) -> tuple[str, str]:
    """Create a project through the admin API; returns (project id, all-scopes key secret)."""
    status, _, body = await call(
        session,
        "POST",
        f"{stack.base_url}/admin/v1/projects",
        stack.admin_token,
        json={"name": name, "plan": plan},
    )
    assert status == 201, body
    return body["data"]["project"]["id"], body["data"]["key"]["secret"]


async def new_key(
    session: aiohttp.ClientSession, stack: Stack, key: str, scopes: list[str], name: str = "scoped"
) -> dict[str, Any]:
    """Create a key with `scopes` using `key`; returns the created key (with its secret)."""
    status, _, body = await call(
        session, "POST", f"{stack.base_url}/api/v1/keys", key, json={"name": name, "scopes": scopes}
    )
    assert status == 201, body
    return dict(body["data"])
