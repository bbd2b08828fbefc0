"""The key cache: misses are cached and bounded, revocation wins over lookups in flight and
reaches other replicas through the control plane's `keys` version (SQLite and PostgreSQL)."""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from services.common import apikeys
from services.common.auth import KeyAuthenticator
from services.common.controlplane import ControlPlane, KeyRecord
from services.common.errors import Unauthenticated

SERVER_KEY = "key-cache-test-secret-0123456789-abcdef"


class CountingPlane:
    """A control plane that counts key lookups and can hold the next one until released."""

    def __init__(self, inner: ControlPlane) -> None:
        self.inner = inner
        self.lookups = 0
        self.hold: asyncio.Event | None = None
        self.held = asyncio.Event()

    async def find_key(self, digest: str) -> KeyRecord | None:
        self.lookups += 1
        found = await self.inner.find_key(digest)  # read before the revocation commits
        if self.hold is not None:
            hold, self.hold = self.hold, None
            self.held.set()
            await hold.wait()
        return found

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def new_key(cp: ControlPlane, auth: KeyAuthenticator | None = None) -> tuple[KeyRecord, str]:
    project = await cp.create_project("p", "free", 1)
    secret = apikeys.new_secret()
    digest = apikeys.hash_secret(secret, SERVER_KEY)
    record = await cp.create_key(
        project_id=project.id, name="k", prefix="cc_live_x", secret_hash=digest, scopes=["*"],
        now_ms=1, expires_at_ms=None,
    )  # fmt: skip
    if auth is not None:
        auth.key_created(digest)
    return record, secret


async def refused(call: Callable[[], Awaitable[Any]]) -> str:
    with pytest.raises(Unauthenticated) as caught:
        await call()
    return caught.value.message


async def test_unknown_keys_are_cached_briefly_and_boundedly(cp: ControlPlane) -> None:
    counting = CountingPlane(cp)
    auth = KeyAuthenticator(counting, SERVER_KEY, 60, unknown_capacity=2)  # type: ignore[arg-type]
    first, second, third = (apikeys.new_secret() for _ in range(3))
    for _ in range(50):
        assert await refused(lambda: auth.authenticate(first)) == "Unknown API key."
    assert counting.lookups == 1
    await refused(lambda: auth.authenticate(second))
    await refused(lambda: auth.authenticate(third))  # pushes `first` out
    assert counting.lookups == 3
    await refused(lambda: auth.authenticate(first))
    assert counting.lookups == 4


async def test_a_key_created_after_a_miss_works_at_once(
    cp: ControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    auth = KeyAuthenticator(cp, SERVER_KEY, 60)
    secret = apikeys.new_secret()
    await refused(lambda: auth.authenticate(secret))
    monkeypatch.setattr(apikeys, "new_secret", lambda: secret)
    record, made = await new_key(cp, auth)
    assert made == secret
    assert (await auth.authenticate(secret)).id == record.id


async def test_a_lookup_in_flight_does_not_cache_a_key_revoked_meanwhile(
    cp: ControlPlane,
) -> None:
    counting = CountingPlane(cp)
    auth = KeyAuthenticator(counting, SERVER_KEY, 60)  # type: ignore[arg-type]
    record, secret = await new_key(cp)
    counting.hold = release = asyncio.Event()
    early = asyncio.create_task(auth.authenticate(secret))
    await counting.held.wait()  # the lookup has read the live key and is still in flight
    assert await cp.revoke_key(record.project_id, record.id, 2)
    auth.forget_key(record.id)
    # A request after the revocation does not wait for (or share) the lookup in flight.
    message = await asyncio.wait_for(refused(lambda: auth.authenticate(secret)), 5)
    assert message == "This API key has been revoked."
    release.set()
    assert (await early).id == record.id  # it started before the revocation
    message = await refused(lambda: auth.authenticate(secret))
    assert message == "This API key has been revoked."


async def test_revocation_reaches_another_replica_at_its_next_sync(cp: ControlPlane) -> None:
    here = KeyAuthenticator(cp, SERVER_KEY, 60)
    there = KeyAuthenticator(cp, SERVER_KEY, 60)
    record, secret = await new_key(cp)
    for replica in (here, there):
        await replica.sync()
        await replica.authenticate(secret)  # cached for a minute
    assert await cp.revoke_key(record.project_id, record.id, 2)
    here.forget_key(record.id)
    await there.sync()  # what `run_sync` does every second
    for replica in (here, there):
        message = await refused(lambda r=replica: r.authenticate(secret))
        assert message == "This API key has been revoked."


async def test_the_keys_version_moves_with_every_key_and_plan_change(cp: ControlPlane) -> None:
    start = await cp.keys_version()
    record, _ = await new_key(cp)
    created = await cp.keys_version()
    assert created > start
    await cp.set_plan(record.project_id, "team")
    planned = await cp.keys_version()
    assert planned > created
    await cp.revoke_key(record.project_id, record.id, 2)
    assert await cp.keys_version() > planned
    assert not await cp.revoke_key(record.project_id, record.id, 3)
