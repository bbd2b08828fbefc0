"""Cross-site request forgery checks of console (cookie) requests (pure, but for `check`).

A session request that changes state must echo the `cc_csrf` cookie in `X-CSRF-Token` (a page of
another site can neither read the cookie nor set the header), and must not come from another
origin: `Origin` (or, without one, `Referer`) must be the API's own, and `Sec-Fetch-Site` must
not be `cross-site`. Keys are not affected: they travel in headers that browsers never add.
"""

import hashlib
import hmac
from collections.abc import Mapping
from urllib.parse import urlsplit

from aiohttp import web

from services.common.config import Settings
from services.common.errors import Forbidden

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_COOKIE = "cc_csrf"
CSRF_HEADER = "X-CSRF-Token"


def origin_of(url: str) -> str | None:
    """`scheme://host[:port]` of a URL, lower-cased; None when it has none."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    if not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()


def own_origins(scheme: str, host: str | None, public_base_url: str | None) -> frozenset[str]:
    """The origins a console page of this API may have: the request's own (its `Host`) and
    the configured public base URL's."""
    found = {origin_of(public_base_url)} if public_base_url else set()
    if host:
        found.add(origin_of(f"{scheme}://{host}"))
    return frozenset(o for o in found if o)


def cross_site_problem(headers: Mapping[str, str], origins: frozenset[str]) -> str | None:
    """Why a request looks like it comes from another site, or None."""
    if headers.get("Sec-Fetch-Site", "").lower() == "cross-site":
        return "Cross-site requests are refused."
    claimed = headers.get("Origin") or headers.get("Referer")
    if claimed is not None and origin_of(claimed) not in origins:
        return "Requests from another origin are refused."
    return None


def _same(a: str, b: str) -> bool:
    # Digests first: compare_digest leaks the length of its inputs, these have one length.
    return hmac.compare_digest(_digest(a), _digest(b))


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def token_problem(
    headers: Mapping[str, str], cookies: Mapping[str, str], expected: str
) -> str | None:
    """Why the request's CSRF token is missing or wrong, or None."""
    sent = headers.get(CSRF_HEADER, "")
    if not sent:
        return f"Missing {CSRF_HEADER}: send the value of the {CSRF_COOKIE} cookie."
    if not (_same(sent, cookies.get(CSRF_COOKIE, "")) and _same(sent, expected)):
        return f"Wrong {CSRF_HEADER}: send the value of the {CSRF_COOKIE} cookie."
    return None


def origins_of(request: web.Request, settings: Settings) -> frozenset[str]:
    """The origins this request may come from."""
    return own_origins(request.scheme, request.host, settings.public_base_url)


def check_origin(request: web.Request, settings: Settings) -> None:
    """Refuse a request from another site (sign-in and invitations, which have no session)."""
    if problem := cross_site_problem(request.headers, origins_of(request, settings)):
        raise Forbidden(problem)


def check(request: web.Request, settings: Settings, expected_token: str) -> None:
    """Refuse a state-changing session request without the right token or from another site."""
    if request.method in SAFE_METHODS:
        return
    check_origin(request, settings)
    if problem := token_problem(request.headers, request.cookies, expected_token):
        raise Forbidden(problem)
