"""API key secrets: generation, format check, keyed hashing and scope rules (pure)."""

import functools
import hashlib
import hmac
import re

from services.common.ids import random_base62

SECRET_PREFIX = "cc_live_"  # noqa: S105 - a public prefix, not a secret
SECRET_RANDOM_CHARS = 40  # 40 * log2(62) = 238 bits, above the contract's 190
DISPLAY_PREFIX_CHARS = len(SECRET_PREFIX) + 6
_WELL_FORMED = re.compile(rf"{SECRET_PREFIX}[0-9A-Za-z]{{32,128}}")


def new_secret() -> str:
    """A fresh key secret, shown to its owner once."""
    return SECRET_PREFIX + random_base62(SECRET_RANDOM_CHARS)


def is_well_formed(secret: str) -> bool:
    """Whether a presented secret has the shape of one we issue."""
    return _WELL_FORMED.fullmatch(secret) is not None


@functools.lru_cache(maxsize=8)
def _mac_key(server_key: str) -> bytes:
    return hashlib.sha256(b"codecourier api key hash\0" + server_key.encode()).digest()


def hash_secret(secret: str, server_key: str) -> str:
    """Keyed BLAKE2b of the secret under the server key: a stolen table alone cannot be replayed.

    BLAKE2b in keyed mode is a MAC like HMAC-SHA256, at a fraction of the cost per request.
    """
    return hashlib.blake2b(secret.encode(), key=_mac_key(server_key), digest_size=32).hexdigest()


def hashes_match(stored: str, presented: str) -> bool:
    """Constant-time comparison of two hex digests."""
    return hmac.compare_digest(stored.encode(), presented.encode())


def display_prefix(secret: str) -> str:
    """The first characters of a secret, safe to list so owners can tell keys apart."""
    return secret[:DISPLAY_PREFIX_CHARS]


def has_scope(held: list[str] | tuple[str, ...], needed: str) -> bool:
    """Whether a key holding `held` may act with `needed`."""
    return "*" in held or needed in held


def ungrantable(held: list[str] | tuple[str, ...], requested: list[str]) -> list[str]:
    """The requested scopes that a key holding `held` may not hand out."""
    if "*" in held:
        return []
    return [scope for scope in requested if scope not in held]
