"""Signing in: failure throttles, new sessions, their cookies, and the `Session` answer.

Failures are counted per account (5 in a burst, then 1 a minute) and per client address
(20 in a burst, then 10 a minute). Each attempt takes a token from both buckets before the
password is checked, and a right password gives them back: past either limit every attempt is
refused, right password or not, and parallel guesses cannot outrun the count.
"""

import hashlib
from typing import cast

from aiohttp import web

from schemas.console import Role, Session, SessionMembership, SessionUser
from services.api.csrf import CSRF_COOKIE
from services.api.deps import Deps
from services.api.sessionauth import (
    ABSOLUTE_MS,
    SESSION_COOKIE,
    csrf_token_for,
    new_token,
    token_digest,
)
from services.common.clock import now_ms
from services.common.controlplane import MembershipRecord, SessionRecord, UserRecord
from services.common.errors import RateLimited
from services.common.http import data_response
from services.common.ratelimit import Bucket

ACCOUNT_FAILURES = Bucket(per_minute=1, burst=5)
ADDRESS_FAILURES = Bucket(per_minute=10, burst=20)
INCORRECT = "Incorrect email or password."


def normalise_email(email: str) -> str:
    """The stored form of an email: trimmed and lower-cased."""
    return email.strip().lower()


def _buckets(email: str, address: str) -> tuple[str, str]:
    account = hashlib.sha256(normalise_email(email).encode()).hexdigest()[:32]
    return f"signin-account:{account}", f"signin-address:{address}"


async def take_attempt(deps: Deps, email: str, address: str) -> None:
    """Count a password attempt against the account and the address; RateLimited past either."""
    account, client = _buckets(email, address)
    decision = await deps.limiter.take(client, ADDRESS_FAILURES)
    if decision.allowed:
        decision = await deps.limiter.take(account, ACCOUNT_FAILURES)
        if not decision.allowed:
            await deps.limiter.take(client, ADDRESS_FAILURES, -1)
    if not decision.allowed:
        raise RateLimited(
            f"Too many failed sign-ins; retry in {decision.retry_after_s} s.",
            decision.retry_after_s,
        )


async def refund_attempt(deps: Deps, email: str, address: str) -> None:
    """A right password costs nothing: give both tokens back."""
    account, client = _buckets(email, address)
    await deps.limiter.take(account, ACCOUNT_FAILURES, -1)
    await deps.limiter.take(client, ADDRESS_FAILURES, -1)


def session_view(user: UserRecord, memberships: list[MembershipRecord], csrf: str) -> Session:
    """A session as the API shows it."""
    return Session(
        user=SessionUser(id=user.id, email=user.email),
        memberships=[
            SessionMembership(
                projectId=m.project_id, projectName=m.project_name, role=cast(Role, m.role)
            )
            for m in memberships
        ],
        csrfToken=csrf,
    )


def secure_cookies(request: web.Request, deps: Deps) -> bool:
    """Whether cookies carry `Secure`: behind an https public URL, or on an https request."""
    base = deps.settings.public_base_url or ""
    return request.secure or base.lower().startswith("https://")


def set_cookies(response: web.Response, secure: bool, token: str, csrf: str) -> None:
    """The session cookie (scripts cannot read it) and the CSRF cookie (the console's script
    reads it to echo it)."""
    max_age = ABSOLUTE_MS // 1000
    response.set_cookie(
        SESSION_COOKIE, token, max_age=max_age, path="/", httponly=True, samesite="Lax",
        secure=secure,
    )  # fmt: skip
    response.set_cookie(CSRF_COOKIE, csrf, max_age=max_age, path="/", samesite="Lax", secure=secure)


def clear_cookies(response: web.Response, secure: bool) -> None:
    """Expire both cookies in the browser."""
    response.del_cookie(SESSION_COOKIE, path="/", secure=secure, httponly=True, samesite="Lax")
    response.del_cookie(CSRF_COOKIE, path="/", secure=secure, samesite="Lax")


async def start_session(request: web.Request, deps: Deps, user: UserRecord) -> web.Response:
    """Create a session for a user who proved who they are: 200 with the session and cookies."""
    token = new_token()
    at = now_ms(deps.clock)
    record = SessionRecord(token_digest(deps, token, "session"), user.id, at, at, at + ABSOLUTE_MS)
    await deps.controlplane.create_session(record)
    csrf = csrf_token_for(deps, token)
    memberships = await deps.controlplane.memberships_of(user.id)
    response = data_response(session_view(user, memberships, csrf))
    set_cookies(response, secure_cookies(request, deps), token, csrf)
    return response
