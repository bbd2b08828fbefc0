"""Opaque pagination cursors: base64url(JSON payload) + '.' + truncated HMAC-SHA256 (pure)."""

import base64
import hashlib
import hmac
from typing import TypeVar

import msgspec

from services.common.errors import InvalidCursor

T = TypeVar("T")
_MAC_BYTES = 16
MAX_CURSOR_CHARS = 512  # longer than any cursor this server issues
_MALFORMED = "The cursor is malformed or was not issued by this server."


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(body: str, key: bytes) -> str:
    return _b64(hmac.new(key, body.encode(), hashlib.sha256).digest()[:_MAC_BYTES])


def encode_cursor(payload: msgspec.Struct, key: bytes) -> str:
    """Sign a payload so that a client can hold it but not alter it."""
    body = _b64(msgspec.json.encode(payload))
    return f"{body}.{_mac(body, key)}"


def decode_cursor(token: str, payload_type: type[T], key: bytes) -> T:
    """Verify and decode a cursor; anything tampered or malformed is INVALID_CURSOR."""
    if len(token) > MAX_CURSOR_CHARS or not token.isascii():  # compare_digest needs ASCII
        raise InvalidCursor(_MALFORMED)
    body, _, mac = token.partition(".")
    if not body or not mac or not hmac.compare_digest(mac.encode(), _mac(body, key).encode()):
        raise InvalidCursor(_MALFORMED)
    try:
        return msgspec.json.decode(_unb64(body), type=payload_type)
    except (msgspec.DecodeError, ValueError) as exc:
        raise InvalidCursor("The cursor does not belong to this listing.") from exc


def derive_key(secret_key: str, purpose: str) -> bytes:
    """A sub-key for one purpose, so one leaked derived key does not expose the others."""
    return hmac.new(secret_key.encode(), purpose.encode(), hashlib.sha256).digest()
