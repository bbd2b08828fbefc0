"""Prefixed random identifiers (`prj_`, `kak_`, ...) in base62."""

import secrets
import string

BASE62 = string.digits + string.ascii_letters


def random_base62(length: int) -> str:
    """`length` characters of cryptographic randomness (5.95 bits each)."""
    return "".join(secrets.choice(BASE62) for _ in range(length))


def new_id(prefix: str, length: int = 20) -> str:
    """A new id such as `prj_4fQ...`; 20 characters carry about 119 bits."""
    return f"{prefix}{random_base62(length)}"
