"""Talking to a running API from the command line: where it is, and one HTTP exchange.

The standard library only, so that the client commands stay fast to start.
"""

import argparse
import http.client
import json
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any, NamedTuple

from services.command import CliError
from services.common.config import Settings
from services.common.localfile import read_credentials


class Endpoint(NamedTuple):
    """The API's base URL and the credentials a client command calls it with."""

    url: str
    admin: str
    key: str


def endpoint(args: argparse.Namespace, settings: Settings) -> Endpoint:
    """`--url/--admin-token/--api-key`, else `CC_URL/CC_ADMIN_TOKEN/CC_API_KEY`, else local.json."""
    saved = read_credentials(settings.data_dir)
    url = args.url or settings.client_url or (saved.baseUrl if saved else "")
    return Endpoint(
        url=url.rstrip("/") or f"http://127.0.0.1:{settings.http_port}",
        admin=getattr(args, "admin_token", None)
        or settings.admin_token
        or (saved.adminToken if saved else ""),
        key=args.api_key or settings.api_key or (saved.apiKey if saved else ""),
    )


def request(method: str, url: str, token: str, body: Any = None) -> Any:
    """One JSON call; contract errors become CliError with code, message and request id."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - operator-given URL
    req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as response:  # noqa: S310
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            error = json.loads(exc.read())["error"]
            detail = "; ".join(f"{d['field']}: {d['message']}" for d in error.get("details", []))
            raise CliError(
                f"{error['code']}: {error['message']}"
                + (f" ({detail})" if detail else "")
                + f" [request {error['requestId']}]"
            ) from None
        except (ValueError, KeyError):
            raise CliError(f"HTTP {exc.code} from {url}") from None
    except urllib.error.URLError as exc:
        raise CliError(f"cannot reach {url}: {exc.reason}; is `codecourier up` running?") from None


class Reply(NamedTuple):
    """An HTTP answer: status, `Retry-After` in seconds (0 when absent) and the JSON body."""

    status: int
    retry_after_s: float
    body: Any


class Unreachable(Exception):
    """The request got no HTTP answer (refused, reset, timed out)."""


def call(url: str, token: str, data: bytes | None = None, content_type: str = "") -> Reply:
    """One HTTP exchange; every status is a Reply, only a missing answer raises Unreachable."""
    method = "POST" if data is not None else "GET"
    req = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - operator's URL
    req.add_header("Authorization", f"Bearer {token}")
    if content_type:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=30) as response:  # noqa: S310
            return Reply(response.status, 0.0, json.loads(response.read() or b"null"))
    except urllib.error.HTTPError as exc:
        try:
            body = json.loads(exc.read() or b"null")
        except ValueError:
            body = None
        return Reply(exc.code, _seconds(exc.headers.get("Retry-After")), body)
    except urllib.error.URLError as exc:
        raise Unreachable(f"cannot reach {url}: {exc.reason}") from None
    except (OSError, http.client.HTTPException) as exc:
        raise Unreachable(f"no answer from {url}: {exc!r}") from None


def _seconds(header: str | None) -> float:
    try:
        return max(0.0, float(header or 0))
    except ValueError:
        return 0.0


def describe(reply: Reply, rename: Callable[[str], str] = lambda text: text) -> str:
    """An error reply in one line: code, message, details and request id."""
    error = reply.body.get("error") if isinstance(reply.body, dict) else None
    if not isinstance(error, dict) or "code" not in error:
        return f"HTTP {reply.status}"
    details = "; ".join(
        f"{rename(d.get('field', ''))}: {d.get('message', '')}" for d in error.get("details") or []
    )
    return (
        f"{error['code']}: {rename(str(error.get('message', '')))}"
        + (f" ({details})" if details else "")
        + f" [request {error.get('requestId', '?')}]"
    )
