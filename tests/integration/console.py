"""Console tests' pieces: an API in this process with a clock the test moves, people created
directly in the control plane, and browsers that keep their own cookies."""

import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import DummyCookieJar
from aiohttp.test_utils import TestClient
from argon2 import PasswordHasher

from services.common import passwords
from services.common.controlplane import ControlPlane, UserRecord, new_user
from tests.integration.apiserver import deps_for, serving, settings_for

PASSWORD = "correct horse battery staple"
_EARLIER = itertools.count(1_000_000, -1)
START_S = 1_800_000_000.0


class Clock:
    """A wall clock the test moves."""

    def __init__(self) -> None:
        self.now_s = START_S

    def __call__(self) -> float:
        return self.now_s

    def advance(self, seconds: float) -> None:
        self.now_s += seconds


@pytest.fixture(autouse=True)
def cheap_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2id with small parameters: the same code path, a fraction of the CPU."""
    monkeypatch.setattr(
        passwords, "_hasher", PasswordHasher(time_cost=1, memory_cost=256, parallelism=1)
    )
    passwords._dummy_hash.cache_clear()


@asynccontextmanager
async def console_api(
    cp: ControlPlane, tmp_path: Path, clock: Clock, **settings: Any
) -> AsyncIterator[TestClient[Any, Any]]:
    """The API with the test's clock; the client keeps no cookies (browsers do)."""
    deps = deps_for(settings_for(tmp_path, **settings), cp, clock=clock)
    async with serving(deps, cookie_jar=DummyCookieJar()) as client:
        yield client


async def person(
    cp: ControlPlane, email: str, memberships: dict[str, str], password: str = PASSWORD
) -> UserRecord:
    """A user with a password and roles by project id, joined in the order of the calls (and
    before the test clock's start, so that what the API adds later comes after)."""
    user = new_user(email, passwords.hash_password_now(password), int(START_S * 1000))
    await cp.create_user(user)
    for project_id, role in memberships.items():
        await cp.add_member(user.id, project_id, role, int(START_S * 1000) - next(_EARLIER))
    return user


@dataclass
class Answer:
    """A response, read."""

    status: int
    body: Any
    headers: Any
    cookies: dict[str, str]

    @property
    def code(self) -> str | None:
        return (
            self.body["error"]["code"]
            if isinstance(self.body, dict) and "error" in self.body
            else None
        )


@dataclass
class Browser:
    """One browser: its cookies, sent with every request; state changes carry the CSRF token."""

    api: TestClient[Any, Any]
    cookies: dict[str, str] = field(default_factory=dict)

    async def call(
        self, method: str, path: str, body: Any = None, *, csrf: bool = True, **headers: str
    ) -> Answer:
        sent = dict(headers)
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if csrf and "cc_csrf" in self.cookies:
            sent.setdefault("X-CSRF-Token", self.cookies["cc_csrf"])
        response = await self.api.request(method, path, json=body, headers=sent)
        text = await response.text()
        got = {name: morsel.value for name, morsel in response.cookies.items()}
        for name, value in got.items():
            if value:
                self.cookies[name] = value
            else:
                self.cookies.pop(name, None)
        parsed = await response.json() if text else None
        return Answer(response.status, parsed, response.headers, got)

    async def sign_in(self, email: str, password: str = PASSWORD) -> Answer:
        answer = await self.call("POST", "/api/v1/session", {"email": email, "password": password})
        assert answer.status == 200, answer.body
        return answer
