"""Delivery-time egress: an HTTP client that refuses internal receivers.

aiohttp sends only names through a resolver, so the guard checks at two points:
- `GuardedConnector.connect` checks the host as the request spells it, on every request
  (pooled connection or not): literal IPs in every spelling (yarl leaves `0x7f.1` and
  `2130706433` as they are) and names that are internal by definition;
- `GuardedResolver` resolves names with getaddrinfo and refuses when any address is internal.
  aiohttp connects to exactly the addresses it returns, so there is no second lookup to rebind.
The allow-list (`CC_EGRESS_ALLOW_CIDRS`) wins over both. Redirects are never followed: a 3xx is
a reply like any other.

Errors, all raised by `post` as they are (never wrapped in an aiohttp error):
- `EgressRefused` (final): the target is internal; the message names the host or address only;
- `TimeoutError` (retryable): no complete answer within `timeout_s`; names host and port only;
- `aiohttp.ClientError` / `OSError` (retryable): the network failed.
"""

import ipaddress
import socket
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.client_reqrep import ClientRequest
from aiohttp.connector import Connection
from aiohttp.tracing import Trace
from yarl import URL

from schemas.deliveries import RESPONSE_BODY_LIMIT
from services.common.egress import EgressRefused, Network, address_allowed, check_host
from services.dispatcher.channels.base import clip

__all__ = ["EgressRefused", "HttpReply", "guarded_session", "post"]

CONNECTIONS_TOTAL = 256
CONNECTIONS_PER_HOST = 32  # shared hosts (hooks.slack.com) carry many subscriptions' lanes
KEEPALIVE_S = 30.0
READ_LIMIT_BYTES = 4 * RESPONSE_BODY_LIMIT  # UTF-8 needs at most 4 bytes per character


@dataclass(frozen=True)
class HttpReply:
    """A receiver's answer: status, headers and the first 16 KiB of its body."""

    status: int
    headers: Mapping[str, str]
    body: str


class GuardedResolver(AbstractResolver):
    """getaddrinfo that refuses a name when any of its addresses is internal."""

    def __init__(self, allow: tuple[Network, ...], inner: AbstractResolver | None = None) -> None:
        self.allow = allow
        self._inner = inner or aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """The addresses of `host`, all of them allowed."""
        results = await self._inner.resolve(host, port, family)
        for result in results:
            try:
                address = ipaddress.ip_address(result["host"])
            except ValueError:
                raise EgressRefused(
                    f"Receiver host {host} resolves to an unreadable address."
                ) from None
            if not address_allowed(address, self.allow):
                raise EgressRefused(
                    f"Receiver host {host} resolves to {address}, which is internal; "
                    "it is not allowed."
                )
        return results

    async def close(self) -> None:
        """Close the wrapped resolver."""
        await self._inner.close()


class GuardedConnector(aiohttp.TCPConnector):
    """A TCP connector that checks each request's host before connecting or reusing."""

    def __init__(self, allow: tuple[Network, ...]) -> None:
        super().__init__(
            resolver=GuardedResolver(allow),
            limit=CONNECTIONS_TOTAL,
            limit_per_host=CONNECTIONS_PER_HOST,
            keepalive_timeout=KEEPALIVE_S,
        )
        self.allow = allow
        self._verdicts: dict[str, str | None] = {}  # host -> refusal (pure in host and allow)

    def _check(self, host: str) -> None:
        if host not in self._verdicts:
            if len(self._verdicts) > 10_000:
                self._verdicts.clear()
            try:
                check_host(host, self.allow)
                self._verdicts[host] = None
            except EgressRefused as exc:
                self._verdicts[host] = str(exc)
        refusal = self._verdicts[host]
        if refusal is not None:
            raise EgressRefused(refusal)

    async def connect(
        self,
        req: ClientRequest,
        traces: list[Trace],
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109 - aiohttp's signature
    ) -> Connection:
        """Refuse internal literal IPs and names; names are then resolved and checked."""
        if not req.url.raw_host:
            raise EgressRefused("Receiver URLs must name a host.")
        self._check(req.url.raw_host)
        return await super().connect(req, traces, timeout)


def guarded_session(allow: tuple[Network, ...] = ()) -> aiohttp.ClientSession:
    """A client session for deliveries: guarded, no proxies from the env, no shared cookies."""
    return aiohttp.ClientSession(
        connector=GuardedConnector(allow),
        trust_env=False,
        cookie_jar=aiohttp.DummyCookieJar(),  # one receiver's cookies must not reach another
    )


async def post(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    timeout_s: float,
) -> HttpReply:
    """POST `body` to `url` without following redirects; errors as in the module docstring."""
    if not isinstance(session.connector, GuardedConnector):
        raise TypeError("post() needs a session made by guarded_session().")
    target = _target(url)
    try:
        async with session.post(
            target,
            data=body,
            headers=dict(headers),
            timeout=aiohttp.ClientTimeout(total=timeout_s),
            allow_redirects=False,
        ) as response:
            raw = await _read_head(response.content, READ_LIMIT_BYTES)
            return HttpReply(
                response.status, response.headers, clip(raw.decode("utf-8", "replace"))
            )
    except TimeoutError:
        # aiohttp's own message carries the whole URL (a Slack URL is a secret)
        raise TimeoutError(
            f"{target.raw_host}:{target.port} did not answer within {timeout_s} s."
        ) from None


def _target(url: str) -> URL:
    """The parsed receiver URL; EgressRefused (without echoing it) if it is not http(s)."""
    try:
        target = URL(url)
    except ValueError:
        raise EgressRefused("Receiver URL is not a valid URL.") from None
    if target.scheme not in ("http", "https") or not target.raw_host:
        raise EgressRefused("Receiver URLs must be absolute http(s) URLs.")
    return target


async def _read_head(stream: aiohttp.StreamReader, limit: int) -> bytes:
    """Up to `limit` bytes of a body (StreamReader.read returns what is buffered so far)."""
    head = bytearray()
    while len(head) < limit and (chunk := await stream.read(limit - len(head))):
        head += chunk
    return bytes(head)
