"""Routes: `/api/v1/keys` (create, list, revoke) and the key-issuing logic the admin API shares."""

import msgspec
from msgspec import Struct

from schemas.api import CreatedKey, CreateKeyBody, Key, RevokedKey
from services.api.deps import Deps
from services.api.routing import (
    CURSOR,
    Call,
    Page,
    Route,
    int_param,
    limit_param,
)
from services.api.views import key_view
from services.common import apikeys
from services.common.clock import iso_ms, now_ms, to_ms
from services.common.controlplane import KeyRecord
from services.common.cursor import decode_cursor, encode_cursor
from services.common.errors import Forbidden, InvalidCursor, InvalidInput, NotFound, ScopeDenied


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
    digest = deps.auth.digest(secret)
    record = await deps.controlplane.create_key(
        project_id=project_id,
        name=name,
        prefix=apikeys.display_prefix(secret),
        secret_hash=digest,
        scopes=normalise_scopes(scopes),
        now_ms=now_ms(deps.clock),
        expires_at_ms=expires_at_ms,
    )
    deps.auth.key_created(digest)
    return CreatedKey(**msgspec.structs.asdict(key_view(record, None)), secret=secret)


def requested_expiry(body: CreateKeyBody, at_ms: int) -> int | None:
    """The new key's expiry in ms, which must be in the future."""
    expires_ms = to_ms(body.expiresAt) if body.expiresAt is not None else None
    if expires_ms is not None and expires_ms <= at_ms:
        raise InvalidInput.field("expiresAt", "Must be in the future.")
    return expires_ms


def bounded_expiry(caller: KeyRecord, expires_ms: int | None) -> int | None:
    """A key never outlives the key that made it: no expiry given inherits the caller's."""
    if caller.expires_at_ms is None:
        return expires_ms
    if expires_ms is None:
        return caller.expires_at_ms
    if expires_ms > caller.expires_at_ms:
        raise Forbidden(
            "A key cannot create a key that outlives it: this key expires at "
            f"{iso_ms(caller.expires_at_ms)}; ask for that time or earlier."
        )
    return expires_ms


async def create_key(call: Call) -> CreatedKey:
    """Create a key no more powerful and no longer-lived than the caller."""
    body: CreateKeyBody = call.body
    caller = call.principal
    missing = apikeys.ungrantable(caller.scopes, list(body.scopes))
    if missing:
        raise ScopeDenied(missing[0])
    expires_ms = bounded_expiry(caller, requested_expiry(body, now_ms(call.deps.clock)))
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
    """Revoke a key of the caller's project that holds no scope the caller lacks."""
    key_id, caller = call.path("keyId"), call.principal
    target = await call.deps.controlplane.get_key(caller.project_id, key_id)
    if target is None or target.revoked_at_ms is not None:
        raise NotFound(f"No key {key_id} in this project.")
    if beyond := apikeys.ungrantable(caller.scopes, target.scopes):
        raise Forbidden(
            f"This key cannot revoke {key_id}: that key holds {', '.join(beyond)}, which this "
            "key does not; revoke it with a key that holds every scope it has."
        )
    at = now_ms(call.deps.clock)
    if not await call.deps.controlplane.revoke_key(caller.project_id, key_id, at):
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
            limit_param(100, 50),
            CURSOR,
        ),
    ),
    Route(
        "DELETE",
        "/api/v1/keys/{keyId}",
        revoke_key,
        "Revoke an API key at once (only a key whose scopes the caller holds too)",
        "keys",
        scope="keys:write",
        response=RevokedKey,
    ),
]
