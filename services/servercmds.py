"""Server commands: `up`, each service alone, and `migrate`; the wiring builds what they run.

The wiring and the services are imported inside the handlers, so that a client command does
not pay for loading them.
"""

import argparse
import asyncio
import gc
import signal

import prometheus_client

from services.command import CliError, Command
from services.common.config import Settings, ensure_secret_key


def tune_gc() -> None:
    """Collect young objects less often: ingest decodes large JSON into many short-lived objects,
    and the default threshold (700) makes the cyclic collector run thousands of times a second."""
    gc.set_threshold(50_000, 20, 100)


def start_worker(settings: Settings) -> None:
    """Prepare a worker process: GC tuned, and Prometheus metrics on `CC_METRICS_PORT` (workers
    have no HTTP server of their own)."""
    tune_gc()
    if settings.metrics_port:
        prometheus_client.start_http_server(settings.metrics_port, addr=settings.http_host)


def bootstrap_of(settings: Settings, command: str, alternative: str = "runs all") -> str:
    """The external cluster a service alone runs against; CliError when none is configured."""
    if not settings.kafka_bootstrap:
        raise CliError(
            f"`codecourier {command}` needs CC_KAFKA_BOOTSTRAP; `codecourier up` {alternative}"
        )
    return settings.kafka_bootstrap


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM."""
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    return stop


def run_up(_args: argparse.Namespace, settings: Settings) -> int:
    """`codecourier up`: the whole local stack in the foreground."""
    from services.local import run_local

    tune_gc()
    return asyncio.run(run_local(settings))


def run_api(_args: argparse.Namespace, settings: Settings) -> int:
    """`codecourier api`: the HTTP API against external services."""
    tune_gc()
    return asyncio.run(_api(settings))


async def _api(settings: Settings) -> int:
    from services import wiring

    bootstrap = bootstrap_of(settings, "api", "runs everything")
    stop = stop_on_signals()
    api = await wiring.api(ensure_secret_key(settings), bootstrap)
    print(f"CodeCourier API listening on http://{settings.http_host}:{api.port}", flush=True)
    try:
        await stop.wait()
    finally:
        await api.stop()
    return 0


def run_logsink(_args: argparse.Namespace, settings: Settings) -> int:
    """`codecourier logsink`: the log sink alone."""
    start_worker(settings)
    return asyncio.run(_logsink(settings))


async def _logsink(settings: Settings) -> int:
    from services import wiring

    bootstrap_of(settings, "logsink")
    stop = stop_on_signals()
    async with wiring.standalone_log_sink(settings) as sink:
        await sink.run(stop)
    return 0


def run_alerts(_args: argparse.Namespace, settings: Settings) -> int:
    """`codecourier alerts`: the alert engine alone (faust runs its own event loop)."""
    from services import wiring

    start_worker(settings)
    bootstrap_of(settings, "alerts")
    return wiring.run_alerts(settings)


def run_dispatcher(_args: argparse.Namespace, settings: Settings) -> int:
    """`codecourier dispatcher`: the dispatcher alone."""
    start_worker(settings)
    return asyncio.run(_dispatcher(settings))


async def _dispatcher(settings: Settings) -> int:
    from services import wiring

    bootstrap_of(settings, "dispatcher")
    if not settings.secret_key and not (settings.data_dir / "secret.key").exists():
        raise CliError("`codecourier dispatcher` needs the API's CC_SECRET_KEY to open secrets")
    settings = ensure_secret_key(settings)
    stop = stop_on_signals()
    async with wiring.dispatcher(settings) as (dispatcher, clients):
        await dispatcher.run(stop, clients)
    return 0


def run_migrate(_args: argparse.Namespace, settings: Settings) -> int:
    """`codecourier migrate`: apply every migration, then exit."""
    return asyncio.run(_migrate(settings))


async def _migrate(settings: Settings) -> int:
    from services import wiring
    from services.common.clock import now_ms

    cp = wiring.controlplane(settings)
    ch = wiring.clickhouse(settings)
    try:
        print(f"control plane: applied {await cp.migrate(now_ms()) or 'nothing (up to date)'}")
        print(f"clickhouse:    applied {await ch.migrate() or 'nothing (up to date)'}")
    finally:
        await cp.close()
        ch.close()
    return 0


COMMANDS = (
    Command(
        "up",
        "run the whole local stack (embedded broker, chDB, SQLite, API, log sink, alerts, "
        "dispatcher)",
        run_up,
        description="Run every service in the foreground with embedded defaults; prints "
        "the base URL, an admin token and a project key, and writes <data dir>/local.json. "
        "Ctrl-C or SIGTERM stops it in order within CC_STOP_TIMEOUT_SECONDS (events are refused, "
        "everything accepted is stored, the broker stops last); a second Ctrl-C stops at once. "
        "A crashed service is restarted with back-off.",
    ),
    Command(
        "api",
        "run the HTTP API alone against external services",
        run_api,
        description="Serve the API; needs CC_KAFKA_BOOTSTRAP. Replicas must share "
        "CC_SECRET_KEY, CC_DATABASE_URL and CC_REDIS_URL.",
    ),
    Command(
        "logsink",
        "run the log sink alone (executions, delivery-log -> ClickHouse)",
        run_logsink,
        description="Consume `executions` and `delivery-log` and write ClickHouse; needs "
        "CC_KAFKA_BOOTSTRAP. Run several (up to the partition count) to scale out; they share "
        "the consumer group.",
    ),
    Command(
        "alerts",
        "run the alert engine alone (executions -> notifications), with its tick producer",
        run_alerts,
        description="Evaluate subscriptions and alert rules on `executions`, `ticks` and "
        "`subscriptions`, produce `notifications`; needs CC_KAFKA_BOOTSTRAP. Run several (up to "
        "the partition count) to scale out; CC_ALERTS_GROUP, CC_ALERTS_STORE, CC_TICK_SECONDS.",
    ),
    Command(
        "dispatcher",
        "run the dispatcher alone (notifications -> webhook, email, Slack)",
        run_dispatcher,
        description="Deliver `notifications` with durable retries on the delay-tier topics and "
        "record every attempt on `delivery-log`; needs CC_KAFKA_BOOTSTRAP, the API's "
        "CC_SECRET_KEY and CC_DATABASE_URL (to disable a subscription whose receiver answers "
        "410). Run several (up to the partition count) to scale out; CC_DISPATCHER_GROUP, "
        "CC_DISPATCHER_LANE_IN_FLIGHT, CC_DISPATCHER_LANE_QUEUE, CC_DELIVERY_TIMEOUT_SECONDS, "
        "CC_RETRY_DELAYS, CC_SMTP_URL, CC_EMAIL_FROM, CC_EGRESS_ALLOW_CIDRS, CC_PAGERDUTY_URL.",
    ),
    Command("migrate", "apply control-plane and ClickHouse migrations, then exit", run_migrate),
)
