"""The route table's types and the wrapper that applies auth, scopes, limits and envelopes."""

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

from schemas.api import ErrorDetail
from services.api import access
from services.api.deps import Deps
from services.api.sessionauth import SessionContext
from services.common.controlplane import KeyRecord
from services.common.cursor import MAX_CURSOR_CHARS
from services.common.errors import InvalidInput
from services.common.http import data_response, read_json


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
    session: SessionContext | None = None  # the console session of a cookie request

    @property
    def principal(self) -> KeyRecord:
        """The calling key, or the key-shaped principal of a session (routes with key or
        session auth only)."""
        assert self.key is not None, "route declared without key or session auth"
        return self.key

    @property
    def person(self) -> SessionContext:
        """The console session (routes with session or user auth only)."""
        assert self.session is not None, "route declared without session auth"
        return self.session

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
    # key: an API key or a console session; session: a session only, acting on a project;
    # user: a session only, about its user (no project); admin: the admin token; none: anyone.
    auth: Literal["key", "session", "user", "admin", "none"] = "key"
    scope: str | None = None
    role: Literal["owner"] | None = None  # sessions of this role only (and never a key)
    body: type[Any] | None = None
    doc_body: type[Any] | None = None  # documented body of a handler that parses its own
    extra_doc: dict[str, type[Any]] = field(default_factory=dict)  # extra list-envelope fields
    response: Any = None
    status: int = 200
    paged: bool = False
    params: tuple[Param, ...] = field(default_factory=tuple)
    limited: bool = True
    conflict: str | None = None  # when the route answers 409 CONFLICT (documented)


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
        key, session = await access.authenticate(route, request, deps)
        query = _query(route, request)
        body = await read_json(request, route.body) if route.body is not None else None
        result = await route.handler(Call(request, deps, key, body, query, session))
        if isinstance(result, web.StreamResponse):
            return result
        if result is None:
            return web.Response(status=204)
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
