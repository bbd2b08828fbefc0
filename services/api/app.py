"""Build and serve the aiohttp application from the route table."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import structlog
from aiohttp import web

from services.api.autodisable import run_auto_disable
from services.api.console import add_console_routes
from services.api.deps import Deps
from services.api.intake import INGEST_PATH, gated
from services.api.ops import READINESS, Readiness
from services.api.outbox import run_relay
from services.api.purge import run_purge
from services.api.routing import bind
from services.api.table import ROUTES
from services.common.http import METRICS, HttpMetrics, envelope_middleware

MAX_REQUEST_LINE_BYTES = 128 * 1024  # holds every documented query parameter at its bound

log = structlog.get_logger(__name__)


def build_app(deps: Deps, background: bool = True) -> web.Application:
    """The application: every route wrapped by auth, limits and envelopes.

    `background` runs the last-used flusher, the outbox relay, auto-disable and the purge of
    old silences and acknowledgements with it (tests may not).
    """
    app = web.Application(
        middlewares=[envelope_middleware],
        client_max_size=deps.settings.max_body_bytes,
    )
    app[METRICS] = HttpMetrics()
    app[READINESS] = Readiness(deps)
    for route in ROUTES:
        handler = bind(route, deps)
        if route.method == "POST" and route.path == INGEST_PATH:
            handler = gated(deps.intake, handler)  # `up` closes it when it stops
        app.router.add_route(route.method, route.path, handler)
    add_console_routes(app)

    async def run_background(_app: web.Application) -> AsyncIterator[None]:
        tasks = [
            asyncio.create_task(deps.auth.run_flusher()),
            asyncio.create_task(deps.auth.run_sync()),
            asyncio.create_task(run_relay(deps)),
            asyncio.create_task(run_auto_disable(deps)),
            asyncio.create_task(run_purge(deps)),
        ]
        yield
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await deps.auth.close()

    if background:
        app.cleanup_ctx.append(run_background)

    async def close_readiness(app: web.Application) -> None:
        await app[READINESS].close()

    app.on_cleanup.append(close_readiness)
    return app


@dataclass
class RunningApi:
    """A started API: its runner, the port it bound and its adapters."""

    runner: web.AppRunner
    port: int
    deps: Deps

    async def stop(self) -> None:
        """Stop serving and release every adapter."""
        await self.runner.cleanup()
        await self.deps.producer.stop()
        await self.deps.limiter.close()
        await self.deps.controlplane.close()
        self.deps.clickhouse.close()


async def serve(deps: Deps) -> RunningApi:
    """Serve on `CC_HTTP_HOST:CC_HTTP_PORT` (port 0 picks a free one)."""
    runner = web.AppRunner(
        build_app(deps), access_log=None, handle_signals=False,
        # Every bounded query reaches the handlers (a request line past aiohttp's default 8 KiB
        # would be answered in plain text, outside the error envelope).
        max_line_size=MAX_REQUEST_LINE_BYTES,
    )  # fmt: skip
    await runner.setup()
    site = web.TCPSite(runner, deps.settings.http_host, deps.settings.http_port)
    await site.start()
    port = int(runner.addresses[0][1])
    log.info("api.listening", host=deps.settings.http_host, port=port)
    return RunningApi(runner, port, deps)
