"""Routes: `/healthz`, `/readyz`, `/metrics` and the OpenAPI document."""

import asyncio
import math
import time
from collections.abc import Awaitable

import structlog
from aiohttp import web
from prometheus_client import REGISTRY, generate_latest

from schemas.api import ErrorDetail, Health
from services.api.deps import Deps
from services.api.routing import Call, Route
from services.common import kafka
from services.common.errors import AppError, Unavailable
from services.common.http import METRICS, json_bytes

log = structlog.get_logger(__name__)


async def healthz(_call: Call) -> Health:
    """The process is alive and serving."""
    return Health(status="ok")


class Readiness:
    """Readiness of every backing service, checked at most once per `ttl_s` with one Kafka client.

    `/readyz` needs no credentials, so each answer is served from the last check: a flood of
    probes costs one round of checks per `ttl_s`. Failures are logged with their cause; the
    answer only names the failing service (no addresses, no driver messages).
    """

    def __init__(self, deps: Deps, ttl_s: float = 2.0, timeout_s: float = 3.0) -> None:
        self._deps = deps
        self._kafka = kafka.KafkaProbe(deps.kafka_bootstrap)
        self._ttl_s = ttl_s
        self._timeout_s = timeout_s
        self._checked_at = -math.inf
        self._results: dict[str, str] = {}
        self._running: asyncio.Future[dict[str, str]] | None = None

    async def results(self) -> dict[str, str]:
        """Service name -> `ok` or `unavailable`, at most `ttl_s` old."""
        if time.monotonic() - self._checked_at < self._ttl_s:
            return self._results
        if self._running is None:
            self._running = asyncio.ensure_future(self._check_all())
            self._running.add_done_callback(self._finished)
        return await asyncio.shield(self._running)

    def _finished(self, done: "asyncio.Future[dict[str, str]]") -> None:
        self._running = None
        if not done.cancelled() and done.exception() is None:
            self._results, self._checked_at = done.result(), time.monotonic()

    async def _check_all(self) -> dict[str, str]:
        deps = self._deps
        probes: dict[str, Awaitable[None]] = {
            "database": deps.controlplane.ping(),
            "clickhouse": deps.clickhouse.ping(),
            "kafka": self._kafka.ping(),
        }
        if deps.redis is not None:
            probes["redis"] = deps.redis.ping()
        states = await asyncio.gather(*(self._check(n, p) for n, p in probes.items()))
        return dict(zip(probes, states, strict=True))

    async def _check(self, name: str, probe: Awaitable[None]) -> str:
        try:
            await asyncio.wait_for(probe, self._timeout_s)
        except TimeoutError:
            log.warning("readyz.unavailable", service=name, error="timed out")
            return "unavailable"
        except AppError as exc:
            log.warning("readyz.unavailable", service=name, error=exc.message)
            return "unavailable"
        return "ok"

    async def close(self) -> None:
        """Close the Kafka client."""
        await self._kafka.close()


READINESS = web.AppKey("readiness", Readiness)


async def readyz(call: Call) -> Health:
    """Every backing service answers; 503 UNAVAILABLE naming the ones that do not."""
    results = await call.request.app[READINESS].results()
    failed = [
        ErrorDetail(field=name, message=state) for name, state in results.items() if state != "ok"
    ]
    if failed:
        error = Unavailable(f"Not ready: {', '.join(d.field for d in failed)} unavailable.")
        error.details = failed
        raise error
    return Health(status="ok", checks=results)


async def metrics(call: Call) -> web.Response:
    """Prometheus text exposition of this process's counters."""
    # The app's HTTP metrics, then the process-wide ones (process, and the log sink when it
    # runs in this process).
    body = generate_latest(call.request.app[METRICS].registry) + generate_latest(REGISTRY)
    return web.Response(body=body, content_type="text/plain", charset="utf-8")


async def openapi(call: Call) -> web.Response:
    """The OpenAPI 3.1 document generated from the route table."""
    from services.api.openapi import document_bytes

    return json_bytes(200, document_bytes())


ROUTES = [
    Route("GET", "/healthz", healthz, "Liveness", "operations", auth="none", response=Health),
    Route(
        "GET",
        "/readyz",
        readyz,
        "Readiness of every dependency",
        "operations",
        auth="none",
        response=Health,
    ),
    Route("GET", "/metrics", metrics, "Prometheus metrics", "operations", auth="none"),
    Route(
        "GET", "/api/v1/openapi.json", openapi, "This OpenAPI document", "operations", auth="none"
    ),
]
