"""Webhook channel (contract section 6): canonical body, signatures, headers and one POST.

The body is compact JSON that `JSON.stringify(JSON.parse(body))` reproduces byte for byte, so a
receiver may verify a signature over its re-serialised `req.body` as well as over the raw body:
numbers are rendered as JavaScript renders them (`1`, `1e+21`, big integers rounded to doubles),
strings are escaped as `JSON.stringify` escapes them, and keys that are array indices come
first in ascending order, as in a JavaScript object.

Signatures are HMAC-SHA256:
- `sim-signature: t=<ms>,v1=<hex>` over `"<ms>.<body>"`, keyed with the secret's UTF-8 bytes.
- Standard Webhooks, opt-in (`WebhookDestination.standardWebhooks`): `webhook-signature:
  v1,<base64>` over `"<webhook-id>.<seconds>.<body>"`. The key is the base64 decoding of what
  follows a `whsec_` prefix when that is valid (padded, standard alphabet) base64, else the
  secret's UTF-8 bytes, prefix included (the same key as `sim-signature`).
During a secret rotation both secrets sign: `t=<ms>,v1=<new>,v1=<old>` and
`v1,<new> v1,<old>`.

The outcome of the POST is classified in `channels.http`, as for Slack.
"""

import base64
import binascii
import hashlib
import hmac
import re
import time
from collections.abc import Iterable
from decimal import Decimal
from typing import Any, Final

import msgspec

from schemas.destinations import WebhookDestination
from schemas.notifications import NotificationRecord
from services.dispatcher.channels import http
from services.dispatcher.channels.base import Context, Result, Secrets

USER_AGENT: Final = "CodeCourier-Webhooks/1"
MAX_SAFE_INTEGER: Final = 2**53
MAX_ARRAY_INDEX: Final = 2**32 - 2

_encoder = msgspec.json.Encoder(decimal_format="number")  # as on the topics
# Keys that may be array indices, and runs of 16 digits, points allowed among them (integers
# that may exceed 2**53, decimals of more digits than a double keeps): a false positive (either
# inside a string) only costs the slow path; a true case never escapes.
_INDEX_KEY = re.compile(rb'"(?:0|[1-9][0-9]{0,9})":')
_DIGITS_AS_ZEROS = bytes.maketrans(b"123456789.", b"0000000000")
_SIXTEEN_DIGITS = b"0" * 16
# Numbers msgspec writes otherwise than JavaScript: a fraction ending in 0 (`1.0`, a Decimal's
# `1.10`), an exponent (`1e21`, `1e-6`, a Decimal's `1E+2`) and `-0`; any other number of at
# most 15 digits both write alike (the shortest digits that read back as the same double).
# Translations and substring searches: a regular expression that starts with a class of
# characters scans the body far more slowly.
_FRACTION_ENDING_IN_ZERO = re.compile(rb"\.[0-9]*0(?:[,}\]]|\Z)")  # \Z: a bare number
_DIGITS_AND_EXPONENTS = bytes.maketrans(b"123456789E", b"000000000e")
_NEGATIVE_ZEROS = (b"-0,", b"-0}", b"-0]")
_SURROGATE = re.compile("([\ud800-\udfff])")


def js_number(value: float) -> str:
    """A float as JavaScript's `Number.prototype.toString` renders it (JSON: null if not finite)."""
    if value != value or value in (float("inf"), float("-inf")):
        return "null"
    if value == 0:
        return "0"
    text = repr(value)
    if "e" not in text:  # repr's fixed range (1e-4 <= |x| < 1e16) is within JavaScript's
        return text[:-2] if text.endswith(".0") else text
    sign = "-" if value < 0 else ""
    mantissa, _, exponent = text.lstrip("-").partition("e")
    digits = mantissa.replace(".", "")
    point = int(exponent) + 1  # digits are 0.d1d2... * 10**point
    return sign + _js_digits(digits, point)


def _js_digits(digits: str, point: int) -> str:
    count = len(digits)
    if count <= point <= 21:
        return digits + "0" * (point - count)
    if 0 < point <= 21:
        return f"{digits[:point]}.{digits[point:]}"
    if -6 < point <= 0:
        return "0." + "0" * -point + digits
    fraction = f".{digits[1:]}" if count > 1 else ""
    return f"{digits[0]}{fraction}e{'+' if point > 0 else '-'}{abs(point - 1)}"


def _js_float_raw(literal: str) -> msgspec.Raw:
    return msgspec.Raw(js_number(float(literal)).encode())


_js_decoder = msgspec.json.Decoder(float_hook=_js_float_raw)


def canonical_body(payload: Any) -> bytes:
    """The payload as compact JSON, byte-identical to `JSON.stringify(JSON.parse(x))`."""
    try:
        raw = _encoder.encode(payload)
    except UnicodeEncodeError:  # lone surrogates: only the slow path can escape them
        builtins = msgspec.to_builtins(payload, str_keys=True, builtin_types=(Decimal,))
        return b"".join(_js_json(builtins))
    if _INDEX_KEY.search(raw) or _SIXTEEN_DIGITS in raw.translate(_DIGITS_AS_ZEROS):
        return b"".join(_js_json(msgspec.json.decode(raw)))
    if _FRACTION_ENDING_IN_ZERO.search(raw) or _has_exponent_or_negative_zero(raw):
        return _encoder.encode(_js_decoder.decode(raw))
    return raw  # the common case: one encoding, no number to rewrite


def _has_exponent_or_negative_zero(raw: bytes) -> bool:
    if b"0e" in raw.translate(_DIGITS_AND_EXPONENTS):
        return True
    return b"-0" in raw and (raw.endswith(b"-0") or any(z in raw for z in _NEGATIVE_ZEROS))


def _js_json(value: Any) -> Iterable[bytes]:
    """Chunks of `value` (builtins only) serialised as `JSON.stringify` would."""
    if isinstance(value, str):
        yield _js_string(value)
    elif value is None or isinstance(value, bool):
        yield _encoder.encode(value)
    elif isinstance(value, int):
        yield str(value).encode() if abs(value) <= MAX_SAFE_INTEGER else _js_big_int(value)
    elif isinstance(value, float | Decimal):
        yield js_number(float(value)).encode()
    elif isinstance(value, dict):
        yield from _js_object(value)
    elif isinstance(value, list | tuple):
        yield b"["
        for position, item in enumerate(value):
            yield b"," if position else b""
            yield from _js_json(item)
        yield b"]"
    else:
        yield _encoder.encode(value)


def _js_big_int(value: int) -> bytes:
    try:
        return js_number(float(value)).encode()
    except OverflowError:  # beyond the largest double: JSON.parse makes it Infinity
        return b"null"


def _js_object(value: dict[str, Any]) -> Iterable[bytes]:
    indices = sorted((int(k), k) for k in value if _is_array_index(k))
    keys = [k for _, k in indices] + [k for k in value if not _is_array_index(k)]
    yield b"{"
    for position, key in enumerate(keys):
        yield b"," if position else b""
        yield _js_string(key)
        yield b":"
        yield from _js_json(value[key])
    yield b"}"


def _is_array_index(key: str) -> bool:
    if not key.isdigit() or not key.isascii() or (key[0] == "0" and key != "0"):
        return False
    return int(key) <= MAX_ARRAY_INDEX


def _js_string(text: str) -> bytes:
    """A JSON string; msgspec escapes exactly as JSON.stringify, except lone surrogates."""
    if not _SURROGATE.search(text):
        return _encoder.encode(text)
    parts = _SURROGATE.split(text)  # odd positions hold the surrogates
    inner = (
        b"\\u%04x" % ord(part) if i % 2 else _encoder.encode(part)[1:-1]
        for i, part in enumerate(parts)
    )
    return b'"' + b"".join(inner) + b'"'


def sim_signature(body: bytes, secrets: Secrets, timestamp_ms: int) -> str | None:
    """The `sim-signature` header value, or None without a secret."""
    keys = _secrets_of(secrets)
    if not keys:
        return None
    signed = b"%d." % timestamp_ms + body
    macs = (hmac.new(key.encode(), signed, hashlib.sha256).hexdigest() for key in keys)
    return f"t={timestamp_ms}," + ",".join(f"v1={mac}" for mac in macs)


def standard_signature(
    body: bytes, secrets: Secrets, message_id: str, timestamp_s: int
) -> str | None:
    """The Standard Webhooks `webhook-signature` header value, or None without a secret."""
    keys = _secrets_of(secrets)
    if not keys:
        return None
    signed = f"{message_id}.{timestamp_s}.".encode() + body
    macs = (hmac.new(standard_key(key), signed, hashlib.sha256).digest() for key in keys)
    return " ".join("v1," + base64.b64encode(mac).decode() for mac in macs)


def standard_key(secret: str) -> bytes:
    """The Standard Webhooks HMAC key of a secret (see the module docstring)."""
    if secret.startswith("whsec_"):
        try:
            key = base64.b64decode(secret[6:], validate=True)
        except binascii.Error:
            key = b""
        if key:
            return key
    return secret.encode()


def _secrets_of(secrets: Secrets) -> list[str]:
    return [s for s in (secrets.current, secrets.previous) if s]


def headers(
    record: NotificationRecord, body: bytes, secrets: Secrets, now_ms: int
) -> dict[str, str]:
    """Every header of a webhook POST (contract section 6)."""
    result = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "sim-event": record.payload.type,
        "sim-timestamp": str(now_ms),
        "sim-delivery-id": record.deliveryId,
        "Idempotency-Key": record.deliveryId,
    }
    if signature := sim_signature(body, secrets, now_ms):
        result["sim-signature"] = signature
    destination = record.destination
    if isinstance(destination, WebhookDestination) and destination.standardWebhooks:
        seconds = now_ms // 1000
        result["webhook-id"] = record.deliveryId
        result["webhook-timestamp"] = str(seconds)
        if standard := standard_signature(body, secrets, record.deliveryId, seconds):
            result["webhook-signature"] = standard
    return result


async def send(record: NotificationRecord, secrets: Secrets, ctx: Context) -> Result:
    """POST the signed payload to the subscription's URL."""
    destination = record.destination
    if not isinstance(destination, WebhookDestination) or not destination.url:
        return Result(delivered=False, error="the webhook destination has no URL")
    url = destination.url
    body = canonical_body(record.payload)
    now_ms = time.time_ns() // 1_000_000
    return await http.post(
        ctx, url, body, headers(record, body, secrets, now_ms), _secrets_of(secrets)
    )
