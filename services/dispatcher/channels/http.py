"""HTTP attempt -> Result: the classification shared by webhooks and Slack (an incoming webhook).

2xx delivered; a network error, a timeout, 5xx or 429 retryable (with the receiver's
Retry-After); 410 final and gone; 3xx final (redirects are not followed); any other status
final; a refusal of the egress guard final. Texts the caller hides (a secret URL, its path)
never appear in an error.
"""

import re
import time
from collections.abc import Iterable, Mapping
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp

from services.common.egress import EgressRefused
from services.dispatcher import egress
from services.dispatcher.channels.base import Context, Result, clip

_DELTA_SECONDS = re.compile(r"[0-9]{1,10}(?:\.[0-9]{1,6})?")


async def post(
    ctx: Context, url: str, body: bytes, sent_headers: Mapping[str, str], hidden: Iterable[str]
) -> Result:
    """One POST through the egress guard, classified; `hidden` never appears in errors."""
    try:
        reply = await egress.post(ctx.http, url, body, sent_headers, ctx.timeout_s)
    except (EgressRefused, TimeoutError, aiohttp.ClientError, OSError) as exc:
        return failure(exc, ctx.timeout_s, [url, *hidden])
    return outcome(reply, time.time())


def outcome(reply: egress.HttpReply, now_s: float) -> Result:
    """The Result of a receiver's answer."""
    status, body = reply.status, clip(reply.body)
    if 200 <= status < 300:
        return Result(delivered=True, status=status, body=body)
    if status == 429 or status >= 500:
        wait_s = retry_after_s(reply.headers.get("Retry-After"), now_s)
        return _answered(status, body, f"HTTP {status}", retryable=True, retry_after_s=wait_s)
    if status == 410:
        return _answered(status, body, "HTTP 410: the receiver is gone", gone=True)
    if 300 <= status < 400:
        return _answered(status, body, f"HTTP {status}: redirect not followed")
    return _answered(status, body, f"HTTP {status}")


def _answered(status: int, body: str, error: str, **flags: Any) -> Result:
    return Result(delivered=False, status=status, body=body, error=error, **flags)


def retry_after_s(value: str | None, now_s: float) -> float | None:
    """Seconds a Retry-After header asks to wait (delta-seconds or an HTTP-date), if valid."""
    if not value:
        return None
    text = value.strip()
    if _DELTA_SECONDS.fullmatch(text):
        return float(text)
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:  # "-0000": RFC 9110 dates are GMT anyway
        return None
    return max(0.0, moment.timestamp() - now_s)


def failure(exc: BaseException, timeout_s: float, hidden: Iterable[str]) -> Result:
    """The Result of an attempt that got no answer; `hidden` texts are cut from the error."""
    refused = _egress_refusal(exc)
    if refused is not None:
        return Result(delivered=False, error=redact(str(refused), hidden))
    if isinstance(exc, TimeoutError):
        return Result(delivered=False, retryable=True, error=f"timed out after {timeout_s:g} s")
    if isinstance(exc, aiohttp.InvalidURL):
        return Result(delivered=False, error="the receiver URL is invalid")
    message = redact(f"{type(exc).__name__}: {exc}", hidden)
    return Result(delivered=False, retryable=True, error=message)


def redact(message: str, hidden: Iterable[str]) -> str:
    """`message` without any of the `hidden` texts (longest first, so none leaks in part)."""
    for text in sorted(filter(None, hidden), key=len, reverse=True):
        message = message.replace(text, "<hidden>")
    return message


def _egress_refusal(exc: BaseException) -> EgressRefused | None:
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        if isinstance(current, EgressRefused):
            return current
        seen.add(id(current))
        pending += [current.__cause__, current.__context__]
    return None
