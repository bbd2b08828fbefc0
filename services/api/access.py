"""Who may call a route: the admin token, API keys and console sessions, each with its rate
limit, then the route's role and scope checks.

A request that carries a key (`Authorization` or `x-api-key`) is a key request, cookies or
not; otherwise its `cc_session` cookie is looked up. Keys draw from their project's plan bucket,
sessions from their user's console bucket (`console:<userId>`).
"""

import hashlib
import hmac
import math
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from aiohttp import web

from services.api.deps import Deps
from services.api.sessionauth import (
    SESSION_COOKIE,
    SessionContext,
    authenticate_session,
    principal_of,
)
from services.common.apikeys import has_scope
from services.common.auth import presented_secret
from services.common.controlplane import KeyRecord
from services.common.errors import Forbidden, RateLimited, ScopeDenied, Unauthenticated
from services.common.ratelimit import Bucket

if TYPE_CHECKING:
    from services.api.routing import Route

# Wrong admin tokens per client address: 10 in a burst, then one every 12 seconds.
ADMIN_FAILURES = Bucket(per_minute=5, burst=10)


# Refused API keys (unknown, revoked, expired, malformed) per client address: 100 in a burst,
# then one a second; an address past that is refused at once, with no lookup, until it refills.
KEY_FAILURES = Bucket(per_minute=60, burst=100)
BLOCKED_ADDRESSES_MAX = 10_000

Principal = tuple[KeyRecord | None, SessionContext | None]
T = TypeVar("T")


def api_bucket(deps: Deps, plan: str) -> Bucket:
    """The per-project API request bucket for a plan."""
    limits = deps.settings.plan(plan)
    return Bucket(per_minute=limits.api_per_minute, burst=limits.api_burst)


def console_bucket(deps: Deps) -> Bucket:
    """The per-user bucket of console (session) requests."""
    rate = deps.settings.console_rate_per_minute
    return Bucket(per_minute=rate, burst=rate)


async def authenticate(route: "Route", request: web.Request, deps: Deps) -> Principal:
    """The route's caller, rate limited and checked against its role and scope."""
    if route.auth == "admin":
        await _authenticate_admin(request, deps)
        return None, None
    if route.auth == "none":
        return None, None
    secret = presented_secret(request.headers)
    if secret is not None or (
        route.auth == "key" and not request.cookies.get(SESSION_COOKIE)  # parsed only if needed
    ):
        return await _key_request(route, request, deps, secret), None
    return await _session_request(route, request, deps)


async def _key_request(
    route: "Route", request: web.Request, deps: Deps, secret: str | None
) -> KeyRecord:
    key = await _counted(request, deps, "API keys", lambda: deps.auth.authenticate(secret))
    request["project_id"] = key.project_id
    if route.auth != "key":
        who = "an owner signed in to" if route.role == "owner" else "people signed in to"
        raise Forbidden(f"Only {who} the console can do this; an API key cannot.")
    if route.limited:
        await _limit(request, deps, f"api:{key.project_id}", api_bucket(deps, key.plan))
    if route.scope and not has_scope(key.scopes, route.scope):
        raise ScopeDenied(route.scope)
    return key


async def _session_request(route: "Route", request: web.Request, deps: Deps) -> Principal:
    need_project = route.auth != "user"
    session = await _counted(
        request,
        deps,
        "console sessions",
        lambda: authenticate_session(request, deps, need_project),
    )
    await _limit(request, deps, f"console:{session.user.id}", console_bucket(deps))
    if session.membership is None:
        return None, session
    request["project_id"] = session.membership.project_id
    if route.role is not None and session.role != route.role:
        raise Forbidden(f"Only an {route.role} of this project can do this.")
    principal = principal_of(session.user, session.membership)
    if route.scope and not has_scope(principal.scopes, route.scope):
        raise ScopeDenied(route.scope, f"The {session.role} role")
    return principal, session


async def _limit(request: web.Request, deps: Deps, name: str, bucket: Bucket) -> None:
    decision = await deps.limiter.take(name, bucket)
    request["ratelimit"] = decision
    if not decision.allowed:
        raise RateLimited(
            f"Rate limit of {decision.limit_per_minute} requests per minute exceeded; "
            f"retry in {decision.retry_after_s} s.",
            decision.retry_after_s,
        )


async def _counted(
    request: web.Request, deps: Deps, what: str, attempt: Callable[[], Awaitable[T]]
) -> T:
    """Run an authentication attempt; every refused one costs its client address a token, and
    an address without tokens is refused before any lookup (random credentials cannot cost a
    query each)."""
    address = request.remote or "unknown"
    blocked = deps.blocked_addresses
    until = blocked.get(address)
    if until is not None:
        wait_s = until - time.monotonic()
        if wait_s > 0:
            raise RateLimited(_too_many(what, math.ceil(wait_s)), math.ceil(wait_s))
        del blocked[address]
    try:
        return await attempt()
    except Unauthenticated:
        decision = await deps.limiter.take(f"key-auth:{address}", KEY_FAILURES)
        if decision.allowed:
            raise
        if len(blocked) >= BLOCKED_ADDRESSES_MAX:
            blocked.clear()  # only a cache: the shared bucket still refuses them
        blocked[address] = time.monotonic() + decision.retry_after_s
        raise RateLimited(_too_many(what, decision.retry_after_s), decision.retry_after_s) from None


def _too_many(what: str, retry_after_s: int) -> str:
    return f"Too many refused {what} from this address; retry in {retry_after_s} s."


async def _authenticate_admin(request: web.Request, deps: Deps) -> None:
    """Check the admin token; every wrong one costs its client address a token."""
    expected = deps.settings.admin_token
    if not expected:
        raise Unauthenticated("The admin API is disabled: set CC_ADMIN_TOKEN.")
    bucket_name = f"admin-auth:{request.remote or 'unknown'}"
    decision = await deps.limiter.take(bucket_name, ADMIN_FAILURES)
    if not decision.allowed:
        raise RateLimited(
            f"Too many wrong admin tokens from this address; retry in {decision.retry_after_s} s.",
            decision.retry_after_s,
        )
    presented = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    # Digests first: compare_digest leaks the length of its inputs, these have one length.
    if not hmac.compare_digest(_token_digest(presented), _token_digest(expected)):
        raise Unauthenticated("Missing or wrong admin token.")
    await deps.limiter.take(bucket_name, ADMIN_FAILURES, -1)  # the right token costs nothing


def _token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()
