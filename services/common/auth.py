"""Who is calling: key extraction, verification, short caches and buffered last-used times."""

import asyncio
import contextlib
import time
from collections import OrderedDict

import structlog
from multidict import CIMultiDictProxy

from services.common import apikeys
from services.common.clock import Clock, now_ms, system_clock
from services.common.controlplane import ControlPlane, KeyRecord
from services.common.errors import Unauthenticated

log = structlog.get_logger(__name__)


def presented_secret(headers: CIMultiDictProxy[str]) -> str | None:
    """The secret from `Authorization: Bearer` or `x-api-key`, if either is present."""
    authorization = headers.get("Authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    api_key = headers.get("x-api-key", "").strip()
    return api_key or None


def check_usable(key: KeyRecord, at_ms: int) -> None:
    """Raise Unauthenticated for a revoked or expired key."""
    if key.revoked_at_ms is not None:
        raise Unauthenticated("This API key has been revoked.")
    if key.expires_at_ms is not None and key.expires_at_ms <= at_ms:
        raise Unauthenticated("This API key has expired.")


class KeyAuthenticator:
    """Resolves secrets to keys; caches hits and misses briefly, writes last-used times in batches.

    Every local change (key created or revoked, plan changed) bumps a generation: a lookup that
    was in flight across a bump neither caches its answer nor serves later requests, so a revoked
    key is refused on this replica from the next request on. Other replicas notice through the
    control plane's `keys` version, polled every `sync_s` (`run_sync`), and drop their caches.
    """

    def __init__(
        self,
        controlplane: ControlPlane,
        server_key: str,
        cache_s: float,
        clock: Clock = system_clock,
        unknown_capacity: int = 10_000,
        sync_s: float = 1.0,
    ) -> None:
        self._cp = controlplane
        self._server_key = server_key
        self._cache_s = cache_s
        self._clock = clock
        self._cache: dict[str, tuple[float, KeyRecord]] = {}
        self._unknown: OrderedDict[str, float] = OrderedDict()  # digest -> when it was missed
        self._unknown_capacity = unknown_capacity
        self._last_used: dict[str, int] = {}
        self._inflight: dict[str, asyncio.Future[KeyRecord | None]] = {}
        self._generation = 0
        self._version: int | None = None
        self.sync_s = sync_s

    async def authenticate(self, secret: str | None) -> KeyRecord:
        """The live key behind a presented secret (`presented_secret`), or Unauthenticated
        saying why not."""
        if secret is None:
            raise Unauthenticated(
                "Missing API key: send 'Authorization: Bearer <key>' or 'x-api-key: <key>'."
            )
        if not apikeys.is_well_formed(secret):
            raise Unauthenticated("Malformed API key: keys start with 'cc_live_'.")
        digest = self.digest(secret)
        key = self._cached(digest, time.monotonic()) or await self._lookup(digest)
        if key is None or not apikeys.hashes_match(key.secret_hash, digest):
            raise Unauthenticated("Unknown API key.")
        at = now_ms(self._clock)
        check_usable(key, at)
        self._last_used[key.id] = at
        return key

    def _cached(self, digest: str, now: float) -> KeyRecord | None:
        """The key behind `digest` while its cache entry is fresh (most requests end here)."""
        cached = self._cache.get(digest)
        return cached[1] if cached is not None and now - cached[0] < self._cache_s else None

    async def _lookup(self, digest: str) -> KeyRecord | None:
        """A key the cache has no fresh entry for: a remembered miss, or the control plane's."""
        now = time.monotonic()
        missed = self._unknown.get(digest)
        if missed is not None and now - missed < self._cache_s:
            self._unknown.move_to_end(digest)
            return None
        generation = self._generation
        key = await asyncio.shield(self._query(digest))
        if generation == self._generation and self._cache_s > 0:
            if key is None:
                self._remember_unknown(digest, now)
            else:
                self._cache[digest] = (now, key)
        return key

    def _query(self, digest: str) -> "asyncio.Future[KeyRecord | None]":
        # Single flight: when an entry expires under load, one query serves every waiter.
        pending = self._inflight.get(digest)
        if pending is None:
            pending = asyncio.ensure_future(self._cp.find_key(digest))
            self._inflight[digest] = pending

            def done(finished: "asyncio.Future[KeyRecord | None]") -> None:
                if self._inflight.get(digest) is finished:
                    del self._inflight[digest]

            pending.add_done_callback(done)
        return pending

    def _remember_unknown(self, digest: str, now: float) -> None:
        self._unknown[digest] = now
        self._unknown.move_to_end(digest)
        while len(self._unknown) > self._unknown_capacity:
            self._unknown.popitem(last=False)

    def _changed(self) -> None:
        """Something cached may be stale: in-flight lookups must not be reused or cached."""
        self._generation += 1
        self._inflight.clear()

    def digest(self, secret: str) -> str:
        """The stored form of a key secret under the server's secret key."""
        return apikeys.hash_secret(secret, self._server_key)

    def last_used_at(self, key: KeyRecord) -> int | None:
        """The latest use known to this process or the database."""
        buffered = self._last_used.get(key.id)
        stored = key.last_used_at_ms
        return max(v for v in (buffered, stored) if v is not None) if buffered or stored else None

    def forget_key(self, key_id: str) -> None:
        """Drop a key from the cache (after revocation)."""
        self._changed()
        self._cache = {d: entry for d, entry in self._cache.items() if entry[1].id != key_id}

    def forget_project(self, project_id: str) -> None:
        """Drop a project's keys from the cache (after a plan change)."""
        self._changed()
        self._cache = {d: e for d, e in self._cache.items() if e[1].project_id != project_id}

    def key_created(self, digest: str) -> None:
        """A key with this digest now exists: it must not be answered from the miss cache."""
        self._changed()
        self._unknown.pop(digest, None)

    def forget_all(self) -> None:
        """Drop every cached hit and miss (another replica changed keys or plans)."""
        self._changed()
        self._cache.clear()
        self._unknown.clear()

    async def sync(self) -> None:
        """Drop the caches when the control plane's `keys` version moved since the last look."""
        version = await self._cp.keys_version()
        if self._version is not None and version != self._version:
            self.forget_all()
        self._version = version

    async def run_sync(self) -> None:
        """Follow the `keys` version forever; failures are logged and retried."""
        while True:
            try:
                await self.sync()
            except Exception:
                log.warning("keys.sync_failed", exc_info=True)
            await asyncio.sleep(self.sync_s)

    async def flush(self) -> None:
        """Write buffered last-used times in one transaction."""
        pending, self._last_used = self._last_used, {}
        await self._cp.record_key_use(pending.items())

    async def run_flusher(self, interval_s: float = 10.0) -> None:
        """Flush forever; failures are logged and the times retried on the next round."""
        while True:
            await asyncio.sleep(interval_s)
            pending = dict(self._last_used)
            try:
                await self.flush()
            except Exception:
                log.warning("keys.flush_failed", keys=len(pending), exc_info=True)
                for key_id, at in pending.items():
                    self._last_used[key_id] = max(at, self._last_used.get(key_id, 0))

    async def close(self) -> None:
        """Flush what is buffered, tolerating a database that is already gone."""
        with contextlib.suppress(Exception):
            await self.flush()
