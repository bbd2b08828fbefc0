"""What every channel takes and returns (the dispatcher's side of the contract)."""

import ssl
from dataclasses import dataclass

import aiohttp

from schemas.deliveries import RESPONSE_BODY_LIMIT

PAGERDUTY_URL = "https://events.pagerduty.com/v2/enqueue"


@dataclass(frozen=True)
class Secrets:
    """Opened secrets of a subscription: the signing secret (webhook), the URL (Slack, Teams,
    Discord) or the routing key (PagerDuty).

    `previous` is the secret replaced by a rotation while its grace period lasts (the caller
    leaves it None once that has passed): webhooks are signed with both meanwhile.
    """

    current: str | None = None
    previous: str | None = None


@dataclass(frozen=True)
class Result:
    """The outcome of one attempt, whatever the channel.

    `retryable`: a network error, a timeout, 5xx or 429 (contract section 6); anything else
    that is not `delivered` is final. `retry_after_s` is a receiver's Retry-After, if any.
    `gone`: the receiver answered 410, so the subscription is to be disabled.
    """

    delivered: bool
    retryable: bool = False
    status: int | None = None
    body: str = ""
    error: str | None = None
    retry_after_s: float | None = None
    gone: bool = False


@dataclass(frozen=True)
class Context:
    """What a send needs besides the notification: shared clients and settings."""

    http: aiohttp.ClientSession  # egress-guarded, no redirects, no proxies from the env
    timeout_s: float = 30.0
    public_base_url: str = "http://127.0.0.1:8080"
    smtp_url: str | None = None
    smtp_tls: ssl.SSLContext | None = None  # verifies SMTP servers; None: the system's CAs
    email_from: str = "CodeCourier <alerts@codecourier.local>"
    pagerduty_url: str = PAGERDUTY_URL


def fit(text: str, limit: int) -> str:
    """At most `limit` characters, cut with an ellipsis (nothing when `limit` is 0 or less)."""
    if len(text) <= limit:
        return text
    return text[: limit - 1] + "…" if limit > 0 else ""


def clip(text: str) -> str:
    """The first 16 KiB of a response body, as recorded in the delivery log."""
    return text[:RESPONSE_BODY_LIMIT]
