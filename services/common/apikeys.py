"""API key secrets: generation, format check, keyed hashing and scope rules (pure)."""

import hashlib
import hmac

from services.common.ids import BASE62, random_base62

SECRET_PREFIX = "cc_live_"  # noqa: S105 - a public prefix, not a secret
SECRET_RANDOM_CHARS = 40  # 40 * log2(62) = 238 bits, above the contract's 190
DISPLAY_PREFIX_CHARS = len(SECRET_PREFIX) + 6
_BASE62_SET = frozenset(BASE62)


def new_secret() -> str:
    """A fresh key secret, shown to its owner once."""
    return SECRET_PREFIX + random_base62(SECRET_RANDOM_CHARS)


def is_well_formed(secret: str) -> bool:
    """Whether a presented secret has the shape of one we issue."""
    body = secret[len(SECRET_PREFIX) :]
    return (
        secret.startswith(SECRET_PREFIX)
        and 32 <= len(body) <= 128
        and all(ch in _BASE62_SET for ch in body)
    )


def hash_secret(secret: str, server_key: str) -> str:
    """HMAC-SHA256 of the secret under the server key: a stolen table alone cannot be replayed."""
    return hmac.new(server_key.encode(), secret.encode(), hashlib.sha256).hexdigest()


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
