"""A fast screen for ingest events: blobs checked for shape only, the full decode as the judge.

Decoding trace spans, final output, files and workflow state into Python objects was most of the
API's ingest CPU, only to throw the objects away. The screen decodes an event with the same types
except that the blobs' contents are skipped (msgspec still checks their JSON syntax and, for
arrays and objects, their shape, at every occurrence of a repeated key). Whenever the full `Event`
decode could answer differently, the caller asks it instead, so the outcome and every error
message stay exactly those of the full decode:
- the screen fails (the full decode words the error);
- the event holds non-ASCII bytes that are not valid UTF-8 (the full decode checks strings);
- the event holds a number that could overflow a float (an exponent of three or more digits, or
  a long run of digits, which also covers integers past Python's digit limit).
Nesting depth needs no check: skipping a value recurses exactly as deep as decoding it.
"""

from typing import Annotated

import msgspec
from msgspec import Meta, Raw, Struct

from schemas.bounds import MAX_FILES, MAX_TRACE_SPANS
from schemas.events import CompletedFacts, ExecutionStarted

NULL = Raw(b"null")
# Every byte that can continue a number becomes `0` and every byte that can precede one becomes
# `d`, so that risky numbers are found with plain substring searches instead of a slow regex.
_NUMBERISH = bytes(
    ord("0") if chr(b) in "0123456789.+-" else ord("e") if chr(b) in "eE"
    else ord("d") if chr(b) in ":,[ \t\r\n" else ord("x")
    for b in range(256)
)  # fmt: skip
_LONG_DIGITS = b"0" * 200  # more digits than a float can take before its exponent matters
_BIG_EXPONENT = b"e000"  # three or more exponent digits (a sign counts: conservative)


class AnyObject(Struct, frozen=True):
    """A JSON object, its members skipped."""


class ScreenedCompleted(
    CompletedFacts, frozen=True, tag="workflow.execution.completed", tag_field="type"
):
    """`ExecutionCompleted` with the same checks on every field except the blobs, kept raw."""

    files: Annotated[list[Raw], Meta(max_length=MAX_FILES)] | None = None
    finalOutput: Raw = NULL
    traceSpans: Annotated[list[Raw], Meta(max_length=MAX_TRACE_SPANS)] | None = None
    workflowState: AnyObject | None = None


# Callers decode with SCREEN and, unless `agrees`, again with the full decoder in the same frame:
# the same stack depth keeps even the recursion limit where it was.
SCREEN = msgspec.json.Decoder(ExecutionStarted | ScreenedCompleted)


def _risky_number(raw: bytes) -> bool:
    """Whether `raw` may hold a number that overflows a float (found in strings too: harmless)."""
    shape = raw.translate(_NUMBERISH)
    if _LONG_DIGITS in shape:
        return True
    at = shape.find(_BIG_EXPONENT)
    while at != -1:
        start = at
        while start > 0 and shape[start - 1] == 0x30:  # back over the mantissa
            start -= 1
        if start < at and (start == 0 or shape[start - 1] == 0x64):  # a number token: d0..0e000
            return True
        at = shape.find(_BIG_EXPONENT, at + 1)
    return False


def _plain(raw: bytes) -> bool:
    """Whether nothing in `raw` could make decoding a skipped blob fail: bad UTF-8, big numbers."""
    if not raw.isascii():
        try:
            raw.decode()
        except UnicodeDecodeError:
            return False
    return not _risky_number(raw)


def agrees(event: ExecutionStarted | ScreenedCompleted, raw: bytes) -> bool:
    """Whether the full decode of `raw` surely accepts it, as the screen did (else ask it)."""
    return isinstance(event, ExecutionStarted) or _plain(raw)
