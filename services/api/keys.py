"""Routes: `/api/v1/keys` (create, list, revoke) and the key-issuing logic the admin API shares."""

import msgspec
from msgspec import Struct

from schemas.api import CreatedKey, CreateKeyBody, Key
from services.api.deps import Deps
from services.api.routing import Call, Page, Param, Route, int_param
from services.api.views import key_view
from services.common import apikeys
from services.common.clock import iso_ms, now_ms, to_ms
from services.common.cursor import decode_cursor, encode_cursor
from services.common.errors import InvalidCursor, InvalidInput, NotFound, ScopeDenied


class RevokedKey(Struct, frozen=True):
    """The answer to a revocation."""

    id: str
    revokedAt: str


class KeysCursor(Struct, frozen=True):
    """Where a key listing stopped."""

    v: int
    kind: str
    project: str
    created: int
    id: str


def normalise_scopes(scopes: list[str]) -> list[str]:
    """Sorted, without duplicates; `*` stands alone."""
    return ["*"] if "*" in scopes else sorted(set(scopes))


async def issue_key(
    deps: Deps, project_id: str, name: str, scopes: list[str], expires_at_ms: int | None
) -> CreatedKey:
    """Create a key and return it with its secret, which is not stored anywhere."""
    secret = apikeys.new_secret()
    record = await deps.controlplane.create_key(
        project_id=project_id,
        name=name,
        prefix=apikeys.display_prefix(secret),
        secret_hash=deps.auth.digest(secret),
        scopes=normalise_scopes(scopes),
        now_ms=now_ms(deps.clock),
        expires_at_ms=expires_at_ms,
    )
    return CreatedKey(**msgspec.structs.asdict(key_view(record, None)), secret=secret)


async def create_key(call: Call) -> CreatedKey:
    """Create a key no more powerful than the caller."""
    body: CreateKeyBody = call.body
    caller = call.principal
    missing = apikeys.ungrantable(caller.scopes, list(body.scopes))
    if missing:
        raise ScopeDenied(missing[0])
    expires_ms = to_ms(body.expiresAt) if body.expiresAt is not None else None
    if expires_ms is not None and expires_ms <= now_ms(call.deps.clock):
        raise InvalidInput.field("expiresAt", "Must be in the future.")
    return await issue_key(call.deps, caller.project_id, body.name, list(body.scopes), expires_ms)


async def list_keys(call: Call) -> Page:
    """Live keys of the caller's project, oldest first."""
    project_id = call.principal.project_id
    limit = int_param(call.query, "limit", 50, 1, 100)
    after = None
    if token := call.query.get("cursor"):
        cursor = decode_cursor(token, KeysCursor, call.deps.cursor_key)
        if cursor.kind != "keys" or cursor.project != project_id:
            raise InvalidCursor("The cursor does not belong to this listing.")
        after = (cursor.created, cursor.id)
    records = await call.deps.controlplane.list_keys(project_id, limit + 1, after)
    page, has_more = records[:limit], len(records) > limit
    next_cursor = None
    if has_more:
        last = page[-1]
        next_cursor = encode_cursor(
            KeysCursor(
                v=1, kind="keys", project=project_id, created=last.created_at_ms, id=last.id
            ),
            call.deps.cursor_key,
        )
    items = [key_view(r, call.deps.auth.last_used_at(r)) for r in page]
    return Page(items, next_cursor, has_more)


async def revoke_key(call: Call) -> RevokedKey:
    """Revoke a key of the caller's project; the next request with it is refused."""
    key_id = call.path("keyId")
    at = now_ms(call.deps.clock)
    if not await call.deps.controlplane.revoke_key(call.principal.project_id, key_id, at):
        raise NotFound(f"No key {key_id} in this project.")
    call.deps.auth.forget_key(key_id)
    return RevokedKey(id=key_id, revokedAt=iso_ms(at))


ROUTES = [
    Route(
        "POST",
        "/api/v1/keys",
        create_key,
        "Create an API key (its secret is shown once)",
        "keys",
        scope="keys:write",
        body=CreateKeyBody,
        response=CreatedKey,
        status=201,
    ),
    Route(
        "GET",
        "/api/v1/keys",
        list_keys,
        "List the project's live API keys",
        "keys",
        scope="keys:read",
        response=Key,
        paged=True,
        params=(
            Param("limit", "integer", "1..100, default 50"),
            Param("cursor", "string", "nextCursor of the previous page"),
        ),
    ),
    Route(
        "DELETE",
        "/api/v1/keys/{keyId}",
        revoke_key,
        "Revoke an API key at once",
        "keys",
        scope="keys:write",
        response=RevokedKey,
    ),
]
