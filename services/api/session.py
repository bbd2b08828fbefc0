"""Routes: `/api/v1/session` (sign in, describe, sign out) and the password change."""

from aiohttp import web

from schemas.console import PasswordChangeBody, Session, SignInBody
from services.api import csrf
from services.api.routing import Call, Route
from services.api.sessionauth import csrf_token_for
from services.api.signin import (
    INCORRECT,
    clear_cookies,
    normalise_email,
    refund_attempt,
    secure_cookies,
    session_view,
    start_session,
    take_attempt,
)
from services.common.clock import now_ms
from services.common.errors import InvalidInput, Unauthenticated
from services.common.passwords import hash_password, verify_password


def address_of(call: Call) -> str:
    """The client address sign-in failures are counted against."""
    return call.request.remote or "unknown"


async def sign_in(call: Call) -> web.Response:
    """Check an email and password; start a session. Unknown email and wrong password answer
    alike, in the same time."""
    body: SignInBody = call.body
    csrf.check_origin(call.request, call.deps.settings)
    email, address = normalise_email(body.email), address_of(call)
    await take_attempt(call.deps, email, address)
    user = await call.deps.controlplane.find_user(email)
    right = await verify_password(user.password_hash if user else None, body.password)
    if user is None or not right:
        raise Unauthenticated(INCORRECT)
    await refund_attempt(call.deps, email, address)
    return await start_session(call.request, call.deps, user)


async def get_session(call: Call) -> Session:
    """Describe the caller's session: user, projects and CSRF token."""
    person = call.person
    return session_view(person.user, person.memberships, csrf_token_for(call.deps, person.token))


async def sign_out(call: Call) -> web.Response:
    """Revoke the caller's session and clear its cookies."""
    await call.deps.controlplane.revoke_session(call.person.digest, now_ms(call.deps.clock))
    response = web.Response(status=204)
    clear_cookies(response, secure_cookies(call.request, call.deps))
    return response


async def change_password(call: Call) -> None:
    """Change the caller's password; every other session of theirs ends."""
    body: PasswordChangeBody = call.body
    user, address = call.person.user, address_of(call)
    await take_attempt(call.deps, user.email, address)
    if not await verify_password(user.password_hash, body.currentPassword):
        raise InvalidInput.field("currentPassword", "Incorrect password.")
    await refund_attempt(call.deps, user.email, address)
    new_hash = await hash_password(body.newPassword)
    at = now_ms(call.deps.clock)
    await call.deps.controlplane.change_password(user.id, new_hash, at, call.person.digest)


ROUTES = [
    Route(
        "POST",
        "/api/v1/session",
        sign_in,
        "Sign in to the console with an email and password (sets the session cookies)",
        "session",
        auth="none",
        body=SignInBody,
        response=Session,
    ),
    Route(
        "GET",
        "/api/v1/session",
        get_session,
        "Describe the console session",
        "session",
        auth="user",
        response=Session,
    ),
    Route(
        "DELETE",
        "/api/v1/session",
        sign_out,
        "Sign out: end the session and clear its cookies",
        "session",
        auth="user",
        status=204,
    ),
    Route(
        "POST",
        "/api/v1/session/password",
        change_password,
        "Change the password; every other session of the user ends",
        "session",
        auth="user",
        body=PasswordChangeBody,
        status=204,
    ),
]
