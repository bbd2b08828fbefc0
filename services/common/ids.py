"""Identifiers: prefixed random ones (`prj_`, `kak_`, ...) in base62, and derived log ids."""

import hashlib
import secrets
import string

BASE62 = string.digits + string.ascii_letters


def random_base62(length: int) -> str:
    """`length` characters of cryptographic randomness (5.95 bits each)."""
    return "".join(secrets.choice(BASE62) for _ in range(length))


def new_id(prefix: str, length: int = 20) -> str:
    """A new id such as `prj_4fQ...`; 20 characters carry about 119 bits."""
    return f"{prefix}{random_base62(length)}"


def log_id_for(project_id: str, execution_id: str) -> str:
    """The log id of an execution: deterministic, so a resent execution keeps its id."""
    digest = hashlib.blake2b(f"{project_id}\0{execution_id}".encode(), digest_size=12)
    return "log_" + digest.hexdigest()
