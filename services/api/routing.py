"""The route table's types and the wrapper that applies auth, scopes, limits and envelopes."""

import hashlib
import hmac
import math
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

from schemas.api import ErrorDetail
from services.api.deps import Deps
from services.common.apikeys import has_scope
from services.common.controlplane import KeyRecord
from services.common.cursor import MAX_CURSOR_CHARS
from services.common.errors import InvalidInput, RateLimited, ScopeDenied, Unauthenticated
from services.common.http import data_response, read_json
from services.common.ratelimit import Bucket


@dataclass(frozen=True)
class Param:
    """A query parameter a route accepts (anything else is a 400)."""

    name: str
    kind: Literal["string", "integer", "number", "boolean"] = "string"
    description: str = ""
    bounds: dict[str, Any] = field(default_factory=dict)  # JSON Schema keywords for OpenAPI


@dataclass(frozen=True)
class Page:
    """A list result: items plus the cursor fields of the list envelope."""

    items: list[Any]
    next_cursor: str | None
    has_more: bool
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Call:
    """One request as a handler sees it: validated, authenticated, with its body decoded."""

    request: web.Request
    deps: Deps
    key: KeyRecord | None
    body: Any
    query: dict[str, str]

    @property
    def principal(self) -> KeyRecord:
        """The calling key (routes with key auth only)."""
        assert self.key is not None, "route declared without key auth"
        return self.key

    def path(self, name: str) -> str:
        """A path parameter."""
        return self.request.match_info[name]


Result = Any
HandlerFn = Callable[[Call], Awaitable[Result]]


@dataclass(frozen=True)
class Route:
    """One entry of the route table; the OpenAPI document is generated from these."""

    method: str
    path: str
    handler: HandlerFn
    summary: str
    tag: str
    auth: Literal["key", "admin", "none"] = "key"
    scope: str | None = None
    body: type[Any] | None = None
    doc_body: type[Any] | None = None  # documented body of a handler that parses its own
    extra_doc: dict[str, type[Any]] = field(default_factory=dict)  # extra list-envelope fields
    response: Any = None
    status: int = 200
    paged: bool = False
    params: tuple[Param, ...] = field(default_factory=tuple)
    limited: bool = True
    conflict: str | None = None  # when the route answers 409 CONFLICT (documented)


# Wrong admin tokens per client address: 10 in a burst, then one every 12 seconds.
ADMIN_FAILURES = Bucket(per_minute=5, burst=10)


# Refused API keys (unknown, revoked, expired, malformed) per client address: 100 in a burst,
# then one a second; an address past that is refused at once, with no lookup, until it refills.
KEY_FAILURES = Bucket(per_minute=60, burst=100)
BLOCKED_ADDRESSES_MAX = 10_000


def api_bucket(deps: Deps, plan: str) -> Bucket:
    """The per-project API request bucket for a plan."""
    limits = deps.settings.plan(plan)
    return Bucket(per_minute=limits.api_per_minute, burst=limits.api_burst)


async def _authenticate(route: Route, request: web.Request, deps: Deps) -> KeyRecord | None:
    if route.auth == "admin":
        await _authenticate_admin(request, deps)
        return None
    if route.auth == "none":
        return None
    key = await _authenticate_key(request, deps)
    request["project_id"] = key.project_id
    if route.limited:
        decision = await deps.limiter.take(f"api:{key.project_id}", api_bucket(deps, key.plan))
        request["ratelimit"] = decision
        if not decision.allowed:
            raise RateLimited(
                f"Rate limit of {decision.limit_per_minute} requests per minute exceeded; "
                f"retry in {decision.retry_after_s} s.",
                decision.retry_after_s,
            )
    if route.scope and not has_scope(key.scopes, route.scope):
        raise ScopeDenied(route.scope)
    return key


async def _authenticate_key(request: web.Request, deps: Deps) -> KeyRecord:
    """The request's key; every refused one costs its client address a token, and an address
    without tokens is refused before any lookup (random keys cannot cost a query each)."""
    address = request.remote or "unknown"
    blocked = deps.blocked_addresses
    until = blocked.get(address)
    if until is not None:
        wait_s = until - time.monotonic()
        if wait_s > 0:
            raise RateLimited(_too_many_keys(math.ceil(wait_s)), math.ceil(wait_s))
        del blocked[address]
    try:
        return await deps.auth.authenticate(request.headers)
    except Unauthenticated:
        decision = await deps.limiter.take(f"key-auth:{address}", KEY_FAILURES)
        if decision.allowed:
            raise
        if len(blocked) >= BLOCKED_ADDRESSES_MAX:
            blocked.clear()  # only a cache: the shared bucket still refuses them
        blocked[address] = time.monotonic() + decision.retry_after_s
        raise RateLimited(_too_many_keys(decision.retry_after_s), decision.retry_after_s) from None


def _too_many_keys(retry_after_s: int) -> str:
    return f"Too many refused API keys from this address; retry in {retry_after_s} s."


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


def _query(route: Route, request: web.Request) -> dict[str, str]:
    if not request.query_string:
        return {}
    allowed = {p.name for p in route.params}
    unknown = sorted(set(request.query) - allowed)
    if unknown:
        accepted = ", ".join(sorted(allowed)) or "none"
        raise InvalidInput(
            f"Unknown query parameter(s): {', '.join(unknown)}; accepted: {accepted}.",
            [ErrorDetail(field=name, message="Unknown parameter.") for name in unknown],
        )
    return {name: request.query.getone(name) for name in request.query}


def bind(route: Route, deps: Deps) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Wrap a handler with authentication, rate limiting, scope check, parsing and envelopes."""

    async def handle(request: web.Request) -> web.StreamResponse:
        key = await _authenticate(route, request, deps)
        query = _query(route, request)
        body = await read_json(request, route.body) if route.body is not None else None
        result = await route.handler(Call(request, deps, key, body, query))
        if isinstance(result, web.StreamResponse):
            return result
        if isinstance(result, Page):
            return data_response(
                result.items,
                route.status,
                nextCursor=result.next_cursor,
                hasMore=result.has_more,
                **result.extra,
            )
        return data_response(result, route.status)

    return handle


_INTEGER = re.compile(r"[0-9]{1,20}")


def limit_param(high: int, default: int) -> Param:
    """The `limit` of a listing, documented with its bounds."""
    return Param(
        "limit", "integer", f"1..{high}, default {default}", {"minimum": 1, "maximum": high}
    )


def text_param_doc(name: str, description: str = "", max_chars: int = 256) -> Param:
    """A text parameter of 1..max_chars characters."""
    return Param(name, "string", description, {"minLength": 1, "maxLength": max_chars})


def choice_param(name: str, choices: tuple[str, ...], description: str = "") -> Param:
    """A parameter that takes one of a few words."""
    return Param(name, "string", description, {"enum": list(choices)})


CURSOR = Param(
    "cursor", "string", "nextCursor of the previous page", {"maxLength": MAX_CURSOR_CHARS}
)


def int_param(query: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    """An integer query parameter within bounds, or a VALIDATION_ERROR naming it."""
    raw = query.get(name)
    if raw is None:
        return default
    if _INTEGER.fullmatch(raw) is None:
        raise InvalidInput.field(name, f"Must be an integer, got {raw[:64]!r}.")
    value = int(raw)
    if not low <= value <= high:
        raise InvalidInput.field(name, f"Must be between {low} and {high}, got {value}.")
    return value


def text_param(query: dict[str, str], name: str, max_chars: int = 256) -> str | None:
    """A text query parameter of 1..max_chars characters, or a VALIDATION_ERROR naming it."""
    raw = query.get(name)
    if raw is not None and not 1 <= len(raw) <= max_chars:
        raise InvalidInput.field(name, f"Must be 1 to {max_chars} characters.")
    return raw
