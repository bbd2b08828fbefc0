"""Console sessions as principals: the `cc_session` cookie resolved to a user, a project and
the scopes of the user's role there, so that every route checks a session like a key.

Tokens are 32 random bytes (base64url); the control plane holds only their HMAC-SHA256 under a
key derived from the server secret. A session ends 12 hours after its last use or 7 days after
sign-in, whichever comes first, or when it is revoked.
"""

import functools
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from aiohttp import web

from services.api import csrf
from services.api.deps import Deps
from services.common.clock import now_ms
from services.common.config import require_secret_key
from services.common.controlplane import KeyRecord, MembershipRecord, SessionRecord, UserRecord
from services.common.errors import NotFound, Unauthenticated

SESSION_COOKIE = "cc_session"
PROJECT_HEADER = "X-Project-Id"
IDLE_MS = 12 * 3600 * 1000
ABSOLUTE_MS = 7 * 24 * 3600 * 1000
TOUCH_EVERY_MS = 60 * 1000  # last_seen_at_ms is written at most once a minute per session
MAX_TOKEN_CHARS = 128
VIEWER_SCOPES = (
    "projects:read", "workflows:read", "runs:read", "logs:read", "notifications:read", "keys:read",
)  # fmt: skip


@dataclass(frozen=True)
class SessionContext:
    """A signed-in request: the session, its user, their projects and the one it acts on."""

    digest: str
    token: str
    session: SessionRecord
    user: UserRecord
    memberships: list[MembershipRecord]
    membership: MembershipRecord | None  # None on routes about the user, not a project

    @property
    def role(self) -> str | None:
        """The user's role in the request's project."""
        return self.membership.role if self.membership else None


def new_token() -> str:
    """A fresh session or invitation token: 32 random bytes, base64url."""
    return secrets.token_urlsafe(32)


@functools.lru_cache(maxsize=16)
def _purpose_key(secret_key: str, purpose: str) -> bytes:
    return hmac.new(secret_key.encode(), f"console {purpose}".encode(), hashlib.sha256).digest()


def token_digest(deps: Deps, token: str, purpose: str) -> str:
    """The stored form of a token: HMAC-SHA256 under a key of the server secret and purpose."""
    key = _purpose_key(require_secret_key(deps.settings), purpose)
    return hmac.new(key, token.encode(), hashlib.sha256).hexdigest()


def csrf_token_for(deps: Deps, session_token: str) -> str:
    """The CSRF token of a session: derived from it, so only this server can make one."""
    return token_digest(deps, session_token, "csrf")


def session_problem(session: SessionRecord, at_ms: int) -> str | None:
    """Why a stored session cannot be used at `at_ms`, or None."""
    if session.revoked_at_ms is not None:
        return "This console session has ended; sign in again."
    if at_ms >= session.expires_at_ms or at_ms - session.last_seen_at_ms >= IDLE_MS:
        return "This console session has expired; sign in again."
    return None


def scopes_for(role: str) -> list[str]:
    """The scopes a role acts with: a viewer reads, members and owners do everything."""
    return list(VIEWER_SCOPES) if role == "viewer" else ["*"]


def principal_of(user: UserRecord, membership: MembershipRecord) -> KeyRecord:
    """A session as the key-shaped principal every route checks: the user's id and email,
    the project, the role's scopes and the project's plan."""
    return KeyRecord(
        id=user.id,
        project_id=membership.project_id,
        name=user.email,
        prefix="",
        secret_hash="",
        scopes=scopes_for(membership.role),
        created_at_ms=user.created_at_ms,
        expires_at_ms=None,
        revoked_at_ms=None,
        last_used_at_ms=None,
        plan=membership.plan,
    )


def choose_membership(
    memberships: list[MembershipRecord], requested: str | None
) -> MembershipRecord:
    """The project a request acts on: the one it names, else the oldest membership."""
    for membership in memberships:
        if requested is None or membership.project_id == requested:
            return membership
    if requested is None:
        raise NotFound("This account is not a member of any project; ask an owner to invite you.")
    raise NotFound(f"No project {requested[:64]} among this account's projects.")


async def authenticate_session(
    request: web.Request, deps: Deps, need_project: bool
) -> SessionContext:
    """The live session behind the request's cookie, CSRF-checked, with its project when the
    route acts on one; Unauthenticated saying why not."""
    token = request.cookies.get(SESSION_COOKIE, "")
    if not token:
        raise Unauthenticated(
            "Sign in to the console, or send an API key: 'Authorization: Bearer <key>' or "
            "'x-api-key: <key>'."
        )
    digest = token_digest(deps, token[:MAX_TOKEN_CHARS], "session")
    found = await deps.controlplane.find_session(digest) if len(token) <= MAX_TOKEN_CHARS else None
    if found is None:
        raise Unauthenticated("This console session has ended; sign in again.")
    session, user = found
    at = now_ms(deps.clock)
    if problem := session_problem(session, at):
        raise Unauthenticated(problem)
    csrf.check(request, deps.settings, csrf_token_for(deps, token))
    if at - session.last_seen_at_ms >= TOUCH_EVERY_MS:
        await deps.controlplane.touch_session(digest, at)
    memberships = await deps.controlplane.memberships_of(user.id)
    membership = None
    if need_project:
        membership = choose_membership(memberships, request.headers.get(PROJECT_HEADER))
    return SessionContext(digest, token, session, user, memberships, membership)
