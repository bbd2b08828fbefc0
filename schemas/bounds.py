"""The bounds of everything a tenant sends (contract section 4, "Bounds"), shared by every side.

Most bounds are `Meta` constraints on the Structs that use these aliases. What `Meta` cannot say
is here as plain functions: the time range, and the nesting depth of free-form JSON, which must
be checked on the raw bytes before any decoder recurses into them.
"""

import json
import re
from datetime import UTC, datetime
from typing import Annotated

import msgspec
from msgspec import Meta, Raw

MIN_TIME = datetime(1970, 1, 1, tzinfo=UTC)
MAX_TIME = datetime(2200, 1, 1, tzinfo=UTC)
MAX_DURATION_MS = 31_536_000_000  # one year
MAX_USD = 1_000_000
MAX_TOKENS = 10**12
MAX_JSON_DEPTH = 64  # levels of arrays and objects in one free-form field
MAX_FILES = 1000
MAX_MODELS = 100
MAX_TRACE_SPANS = 10_000
MAX_QUERY_LIST = 100

Id = Annotated[str, Meta(min_length=1, max_length=256)]
Name = Annotated[str, Meta(min_length=1, max_length=256)]
Description = Annotated[str, Meta(max_length=4096)]
Money = Annotated[float, Meta(ge=0, le=MAX_USD)]
TokenCount = Annotated[int, Meta(ge=0, le=MAX_TOKENS)]
DurationMs = Annotated[int, Meta(ge=0, le=MAX_DURATION_MS)]

_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{},:]', re.DOTALL)
_NOT_SHAPE = bytes(range(256)).translate(None, b'"[]{}')
_PAIRS = bytes.maketrans(b"[{]}", b"(())")
_MEMBERS = msgspec.json.Decoder(dict[str, Raw])


def field_error(field: str, message: str) -> ValueError:
    """An error raised in `__post_init__` that the HTTP edge reports under `field`."""
    return ValueError(f"`{field}`: {message}")


def time_error(moment: datetime) -> str | None:
    """Why `moment` is outside the accepted range, or None."""
    if MIN_TIME <= moment < MAX_TIME:
        return None
    return "Must be between 1970-01-01 and 2200-01-01."


def within_depth(raw: bytes, limit: int) -> bool:
    """Whether arrays and objects nest at most `limit` deep in a JSON document.

    Byte operations only (no per-character Python loop): escapes are dropped, then string
    contents, then innermost bracket pairs are peeled one level per pass.
    """
    if raw.count(b"[") + raw.count(b"{") <= limit:  # cheap, and enough for most documents
        return True
    plain = raw.replace(b"\\\\", b"").replace(b'\\"', b"")  # escaped backslashes, then quotes
    shape = plain.translate(None, _NOT_SHAPE)
    if b'"' in shape:
        shape = b"".join(shape.split(b'"')[::2])  # outside strings only
    shape = shape.translate(_PAIRS)
    for _ in range(limit):
        peeled = shape.replace(b"()", b"")
        if peeled == shape:  # empty, or unbalanced: the decoder will say what is wrong
            return True
        shape = peeled
    return b"()" not in shape


def too_deep_at(raw: bytes, limit: int) -> list[str | int] | None:
    """The path (keys and indexes) to the first value nested deeper than `limit`, or None.

    A scan of tokens, never a recursive decode: it is safe on any depth.
    """
    if within_depth(raw, limit):
        return None
    path: list[str | int] = []
    expect_key = False
    for match in _TOKEN.finditer(raw):
        token = match.group()
        if token in (b"[", b"{"):
            if len(path) >= limit:
                return path
            path.append(0 if token == b"[" else "")
            expect_key = token == b"{"
        elif token in (b"]", b"}"):
            path.pop()
        elif token == b",":
            if path and isinstance(path[-1], int):
                path[-1] += 1
            expect_key = bool(path) and isinstance(path[-1], str)
        elif token != b":" and expect_key:
            path[-1] = _key(token)
            expect_key = False
    return None


def too_deep_member(raw: bytes, limit: int) -> str | None:
    """The member of a JSON object that nests deeper than `limit` (the object counting as one
    level), "" when the document is too deep elsewhere, None when it is within `limit`.

    The members are split by the decoder, which skips them in C; only a document too deep for
    even that pays for the token scan.
    """
    if within_depth(raw, limit):
        return None
    try:
        members = _MEMBERS.decode(raw)
    except (msgspec.DecodeError, RecursionError):
        path = too_deep_at(raw, limit)
        return path[0] if path and isinstance(path[0], str) else ""
    for name, value in members.items():
        if not within_depth(bytes(value), limit - 1):
            return name
    return ""


def _key(token: bytes) -> str:
    try:
        return str(json.loads(token))
    except ValueError:  # not UTF-8 or a bad escape: the decoder will say so; name it anyway
        return token[1:-1].decode(errors="replace")


def dotted(path: list[str | int]) -> str:
    """A path as the API names fields: `events[3].finalOutput`."""
    text = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path)
    return text.lstrip(".")
