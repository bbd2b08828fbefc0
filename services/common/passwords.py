"""Console passwords: argon2id hashes computed off the event loop, bounds, and generation.

Hashing takes tens of milliseconds of CPU and 64 MiB by design; it runs in a worker thread so
that other requests keep being served meanwhile.
"""

import asyncio
import functools
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_PASSWORD_CHARS = 12
MAX_PASSWORD_CHARS = 256
GENERATED_PASSWORD_BYTES = 18  # 24 URL-safe characters, 144 bits

_hasher = PasswordHasher()  # argon2id with RFC 9106's second recommended parameters


def password_problem(password: str) -> str | None:
    """Why a password cannot be set, or None."""
    if len(password) < MIN_PASSWORD_CHARS:
        return f"Must be at least {MIN_PASSWORD_CHARS} characters."
    if len(password) > MAX_PASSWORD_CHARS:
        return f"Must be at most {MAX_PASSWORD_CHARS} characters."
    return None


def generate_password() -> str:
    """A strong random password, for accounts made by operators and `codecourier up`."""
    return secrets.token_urlsafe(GENERATED_PASSWORD_BYTES)


def hash_password_now(password: str) -> str:
    """The argon2id hash of a password (blocking: call it from a thread or a command)."""
    return _hasher.hash(password)


async def hash_password(password: str) -> str:
    """The argon2id hash of a password, computed in a worker thread."""
    return await asyncio.to_thread(hash_password_now, password)


def _verify_now(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@functools.cache
def _dummy_hash() -> str:
    return _hasher.hash(secrets.token_urlsafe(32))


def _verify_dummy(password: str) -> bool:
    _verify_now(_dummy_hash(), password)
    return False


async def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether `password` matches; without a hash (an unknown email) a dummy hash is verified,
    so that the answer takes as long as for a known one, and is False."""
    if password_hash is None:
        return await asyncio.to_thread(_verify_dummy, password)
    return await asyncio.to_thread(_verify_now, password_hash, password)
