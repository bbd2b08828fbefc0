"""HTTP helpers for tests against a running stack."""

import asyncio
import io
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import aiohttp

from tests.factories import completed
from tests.processes import Stack

T = TypeVar("T")


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


async def subscribe(
    session: aiohttp.ClientSession,
    stack: Stack,
    key: str,
    url: str = "https://hooks.example.com/cc",
    **fields: Any,
) -> tuple[str, str]:
    """Subscribe a webhook at `url` to every workflow (any body field overridden); returns
    (subscription id, signing secret)."""
    body = {"notificationType": "webhook", "allWorkflows": True, "webhookConfig": {"url": url}}
    status, _, created = await call(
        session, "POST", f"{stack.base_url}/api/v1/notifications", key, json=body | fields
    )
    assert status == 201, created
    return created["data"]["subscription"]["id"], created["data"]["signingSecret"]


async def post_events(
    session: aiohttp.ClientSession, stack: Stack, key: str, events: list[dict[str, Any]]
) -> tuple[int, dict[str, Any], Any]:
    """POST a batch of events."""
    return await call(
        session, "POST", f"{stack.base_url}/api/v1/events", key, json={"events": events}
    )


async def post_run(
    session: aiohttp.ClientSession, stack: Stack, key: str, workflow: str, level: str
) -> None:
    """POST one completed execution of `workflow` ending now at `level`; it must be accepted."""
    event = completed(f"{level}-{time.time_ns()}", workflow, ended=datetime.now(UTC), level=level)
    status, _, body = await post_events(session, stack, key, [event])
    assert status == 202, body


async def read_all(
    session: aiohttp.ClientSession,
    stack: Stack,
    key: str,
    expected: int,
    query: str = "",
    timeout_s: float = 30.0,
) -> list[dict[str, Any]]:
    """Follow the asc cursor until `expected` logs were seen (or fail after `timeout_s`)."""
    seen: list[dict[str, Any]] = []
    cursor = None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        url = f"{stack.base_url}/api/v1/logs?order=asc&limit=1000{query}"
        status, _, body = await call(
            session, "GET", url + (f"&cursor={cursor}" if cursor else ""), key
        )
        assert status == 200, body
        seen += body["data"]
        assert body["nextCursor"], "asc always returns a resume cursor"
        cursor = body["nextCursor"]
        if len(seen) >= expected and not body["hasMore"]:
            return seen
        if not body["hasMore"]:
            await asyncio.sleep(0.2)
    raise AssertionError(f"saw {len(seen)} of {expected} logs within {timeout_s} s")


async def eventually(probe: Callable[[], Awaitable[T | None]], timeout_s: float = 45) -> T:
    """Poll until `probe` answers something truthy."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = await probe()
        if found:
            return found
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.2)
