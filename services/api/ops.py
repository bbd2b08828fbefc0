"""Routes: `/healthz`, `/readyz`, `/metrics` and the OpenAPI document."""

import asyncio
from collections.abc import Awaitable

from aiohttp import web
from prometheus_client import REGISTRY, generate_latest

from schemas.api import ErrorDetail, Health
from services.api.routing import Call, Route
from services.common import kafka
from services.common.errors import AppError, Unavailable
from services.common.http import METRICS, json_bytes


async def healthz(_call: Call) -> Health:
    """The process is alive and serving."""
    return Health(status="ok")


async def _check(probe: Awaitable[None], timeout_s: float = 3.0) -> str:
    try:
        await asyncio.wait_for(probe, timeout_s)
    except (TimeoutError, AppError) as exc:
        return f"unavailable: {getattr(exc, 'message', 'timed out')}"
    return "ok"


async def readyz(call: Call) -> Health:
    """Every backing service answers; 503 UNAVAILABLE naming the ones that do not."""
    deps = call.deps
    probes: dict[str, Awaitable[None]] = {
        "database": deps.controlplane.ping(),
        "clickhouse": deps.clickhouse.ping(),
        "kafka": kafka.ping(deps.kafka_bootstrap),
    }
    if deps.redis is not None:
        probes["redis"] = deps.redis.ping()
    results = dict(
        zip(probes, await asyncio.gather(*(_check(p) for p in probes.values())), strict=True)
    )
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
