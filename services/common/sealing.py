"""Secrets at rest: AES-256-GCM under a key derived from the server secret (pure)."""

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from services.common.cursor import derive_key

_NONCE_BYTES = 12
_VERSION = "v1"


def sealing_key(secret_key: str) -> bytes:
    """The 256-bit key for secrets at rest, derived from `CC_SECRET_KEY`."""
    return derive_key(secret_key, "secrets-at-rest")


def seal(plaintext: str, key: bytes, context: str) -> str:
    """Encrypt `plaintext`, bound to `context` (e.g. the subscription id) as associated data."""
    nonce = os.urandom(_NONCE_BYTES)
    sealed = AESGCM(key).encrypt(nonce, plaintext.encode(), context.encode())
    return f"{_VERSION}.{base64.urlsafe_b64encode(nonce + sealed).decode()}"


def unseal(token: str, key: bytes, context: str) -> str:
    """Decrypt a sealed secret; a wrong key, context or a tampered token raises ValueError."""
    version, _, body = token.partition(".")
    if version != _VERSION:
        raise ValueError("unknown sealed-secret version")
    raw = base64.urlsafe_b64decode(body)
    try:
        return (
            AESGCM(key).decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], context.encode()).decode()
        )
    except InvalidTag as exc:
        raise ValueError("sealed secret does not open with this key and context") from exc
