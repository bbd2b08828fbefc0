"""HTTP edges shared by every route: envelopes, request ids, error mapping, body decoding."""

import os
import re
import time
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import msgspec
import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from schemas.api import ErrorBody, ErrorDetail, ErrorInfo
from schemas.bounds import MAX_JSON_DEPTH, dotted, too_deep_at
from services.common import timing
from services.common.clock import iso_ms
from services.common.errors import (
    AppError,
    InvalidInput,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    Unavailable,
    UnsupportedMediaType,
)
from services.common.log import info_line
from services.common.ratelimit import Decision

log = structlog.get_logger("codecourier.http")

T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

REQUEST_ID = web.AppKey("request_id", str)
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{7,127}$")
_JSON_TYPES = ("application/json",)
_MISSING_FIELD = re.compile(r"Object (?:missing required|contains unknown) field `([^`]+)`")
_FIELD_ERROR = re.compile(r"^`([^`]+)`: (.*)$", re.DOTALL)  # raised by schemas.bounds.field_error
_encoder = msgspec.json.Encoder()


_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
_BOUNDS = (*map(floatToGoString, _LATENCY_BUCKETS), "+Inf")  # as the exposition writes them


class HttpMetrics:
    """Request counters and latency histograms, in a registry of the app's own.

    Requests are tallied in plain numbers and handed to the registry as metric families when it
    is scraped: a prometheus child per request took three locked increments, some 3 of the
    27 µs that a whoami request spent in the API's own code (routing to response, measured in
    a loop). Every tally happens on the event loop's thread, as does every scrape (`/metrics`).
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._requests: dict[tuple[str, str, int], int] = {}
        # per route: a count per bucket (the last one past every bound), then the sum of seconds
        self._latency: dict[str, list[float]] = {}
        self.registry.register(self)

    def observe(self, method: str, route: str, status: int, elapsed_s: float) -> None:
        """Count one request and its latency."""
        key = (method, route, status)
        self._requests[key] = self._requests.get(key, 0) + 1
        latency = self._latency.get(route)
        if latency is None:
            latency = self._latency[route] = [0.0] * (len(_LATENCY_BUCKETS) + 2)
        latency[bisect_left(_LATENCY_BUCKETS, elapsed_s)] += 1
        latency[-1] += elapsed_s

    def collect(self) -> Iterator[Metric]:
        """The tallies as prometheus metric families (the registry calls this on a scrape)."""
        requests = CounterMetricFamily(
            "cc_http_requests", "HTTP requests by route and status",
            labels=["method", "route", "status"],
        )  # fmt: skip
        for (method, route, status), count in self._requests.items():
            requests.add_metric([method, route, str(status)], count)
        yield requests
        latency = HistogramMetricFamily(
            "cc_http_request_duration_seconds", "HTTP request latency", labels=["route"]
        )
        for route, tally in self._latency.items():
            buckets, seen = [], 0.0
            for bound, in_bucket in zip(_BOUNDS, tally[:-1], strict=True):
                seen += in_bucket
                buckets.append((bound, seen))
            latency.add_metric([route], buckets, tally[-1])
        yield latency


METRICS = web.AppKey("metrics", HttpMetrics)


class _Random:
    """Bytes of os.urandom drawn 4 KiB at a time: one system call per 256 request ids."""

    block = b""
    at = 0


def _forget_random() -> None:
    _Random.block, _Random.at = b"", 0


os.register_at_fork(after_in_child=_forget_random)  # a forked child must not reuse the block


def _random16() -> bytes:
    if _Random.at + 16 > len(_Random.block):
        _Random.block, _Random.at = os.urandom(4096), 0
    start = _Random.at
    _Random.at = start + 16
    return _Random.block[start : start + 16]


def new_request_id() -> str:
    """A random UUID4 string (uuid.uuid4() builds an object we would only format)."""
    raw = bytearray(_random16())
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def request_id_of(request: web.Request) -> str:
    """The id of this request (the middleware gives every request one)."""
    existing: str | None = request.get("request_id")
    return existing if existing else _assign_request_id(request)


def _assign_request_id(request: web.Request) -> str:
    """The client's `X-Request-ID` when well formed, else a new UUID4, kept on the request."""
    incoming = request.headers.get("X-Request-ID", "")
    rid = incoming if incoming and _REQUEST_ID_RE.match(incoming) else new_request_id()
    request["request_id"] = rid
    return rid


def json_bytes(status: int, body: bytes, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON response from already-encoded bytes."""
    return web.Response(status=status, body=body, content_type="application/json", headers=headers)


def data_response(data: Any, status: int = 200, **extra: Any) -> web.Response:
    """The success envelope `{"data": ...}` (plus list fields such as `nextCursor`)."""
    return json_bytes(status, _encoder.encode({"data": data, **extra}))


def error_response(error: AppError, request_id: str) -> web.Response:
    """The error envelope for `error`, with `Retry-After` / `Allow` where the code calls for it."""
    info = ErrorInfo(code=error.code, message=error.message, requestId=request_id)
    if error.details:
        info = ErrorInfo(
            code=error.code, message=error.message, requestId=request_id, details=error.details
        )
    headers = {}
    if isinstance(error, RateLimited | Unavailable):
        headers["Retry-After"] = str(error.retry_after_s)
    if isinstance(error, MethodNotAllowed):
        headers["Allow"] = ", ".join(error.allowed)
    return json_bytes(error.status, _encoder.encode(ErrorBody(error=info)), headers)


def _translate(exc: web.HTTPException, request: web.Request) -> AppError:
    if isinstance(exc, web.HTTPMethodNotAllowed):
        return MethodNotAllowed(request.method, sorted(exc.allowed_methods))
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return PayloadTooLarge("Request body is larger than the limit.")
    if isinstance(exc, web.HTTPNotFound):
        return NotFound(f"No route for {request.method} {request.path}.")
    error = AppError(exc.reason or "HTTP error")
    error.status, error.code = exc.status, "INTERNAL" if exc.status >= 500 else "VALIDATION_ERROR"
    return error


def ratelimit_headers(decision: Decision) -> dict[str, str]:
    """The `X-RateLimit-*` headers describing a bucket after a take."""
    return {
        "X-RateLimit-Limit": str(decision.limit_per_minute),
        "X-RateLimit-Remaining": str(decision.remaining),
        "X-RateLimit-Reset": iso_ms(int(decision.reset_at_s * 1000)),
    }


@web.middleware
async def envelope_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Give every response a request id, map every failure to the error envelope, log one line."""
    rid = _assign_request_id(request)
    started = time.perf_counter()
    spent, token = timing.begin()
    try:
        response = await handler(request)
    except AppError as error:
        response = error_response(error, rid)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = error_response(_translate(exc, request), rid)
    except Exception:
        log.exception("http.unhandled", request_id=rid, method=request.method, path=request.path)
        response = error_response(
            AppError("Internal error; quote the request id when reporting it."), rid
        )
    finally:
        timing.end(token)
    elapsed_s = time.perf_counter() - started
    response.headers["X-Request-ID"] = rid
    if spent.queries:
        response.headers["Server-Timing"] = timing.server_timing(spent, elapsed_s)
    decision: Decision | None = request.get("ratelimit")
    if decision is not None:
        response.headers.update(ratelimit_headers(decision))
    _observe(request, response, elapsed_s, rid, spent)
    return response


def _observe(
    request: web.Request,
    response: web.StreamResponse,
    elapsed_s: float,
    rid: str,
    spent: timing.Spent,
) -> None:
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    metrics = request.app.get(METRICS)
    if metrics is not None:
        metrics.observe(request.method, route, response.status, elapsed_s)
    info_line(
        "http.request",
        {
            "request_id": rid,
            "method": request.method,
            "route": route,
            "status": response.status,
            "duration_ms": round(elapsed_s * 1000, 2),
            "db_ms": round(spent.db_s * 1000, 2),
            "project_id": request.get("project_id"),
        },
    )


def validation_error(
    exc: msgspec.ValidationError | msgspec.DecodeError, root: str = ""
) -> InvalidInput:
    """Turn a msgspec error (`... - at `$.a[0].b``) into VALIDATION_ERROR with a field path."""
    text = str(exc)
    message, _, where = text.partition(" - at `")
    where = where.removeprefix("key` in `")  # a dict key: name the dict
    path = where.rstrip("`").removeprefix("$").removeprefix(".") if where else ""
    missing = _MISSING_FIELD.match(message) or _FIELD_ERROR.match(message)
    if missing:  # point at the missing, unknown or out-of-bounds field, not at its parent
        path = f"{path}.{missing.group(1)}".strip(".")
        if missing.re is _FIELD_ERROR:
            message = missing.group(2)
    field = f"{root}.{path}".strip(".").replace(".[", "[") if root else path
    if isinstance(exc, msgspec.DecodeError) and not isinstance(exc, msgspec.ValidationError):
        message = f"Body is not valid JSON: {message}"
    field = field or "body"
    return InvalidInput(
        f"Invalid request: {field}: {message}", [ErrorDetail(field=field, message=message)]
    )


async def read_json(request: web.Request, body_type: type[T]) -> T:
    """Read and validate a JSON body as `body_type`, with contract errors for every failure."""
    if request.content_type not in _JSON_TYPES:
        raise UnsupportedMediaType(
            f"Content-Type must be application/json, got {request.content_type or 'none'}."
        )
    raw = await request.read()
    if not raw:
        raise InvalidInput.field("body", "Request body is empty; send a JSON object.")
    if (path := too_deep_at(raw, MAX_JSON_DEPTH)) is not None:  # before a decoder recurses
        raise InvalidInput.field(
            dotted(path[:1]) or "body", f"JSON nests deeper than {MAX_JSON_DEPTH} levels."
        )
    try:
        return msgspec.json.decode(raw, type=body_type)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise validation_error(exc) from exc
