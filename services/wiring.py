"""The composition root: the only place that turns Settings into concrete adapters and services.

Adapters: the control plane, ClickHouse, the rate limiter, key verification, the Kafka clients,
the embedded broker, the clock. Services: the API (`api`), the log sink (`log_sink`, or
`standalone_log_sink` with its own ClickHouse), the dispatcher with its outbound HTTP session
(`dispatcher`) and the alert engine (`run_alerts`). A service module is imported where the
service is built, so that a process loads only what it runs: the API must not register the
dispatcher's metrics, and faust is slow to import.
"""

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import structlog

from schemas import topics
from services.api.deps import Deps
from services.api.visibility import Visibility
from services.common import kafka
from services.common.auth import KeyAuthenticator
from services.common.broker import EmbeddedBroker
from services.common.clickhouse import ClickHouse
from services.common.clock import now_ms, system_clock
from services.common.config import Settings, require_secret_key
from services.common.controlplane import ControlPlane, make_engine
from services.common.cursor import derive_key
from services.common.kafkaclients import KafkaClients
from services.common.ratelimit import MemoryRateLimiter, RateLimiter, RedisRateLimiter
from services.common.sealing import sealing_key

if TYPE_CHECKING:
    from services.api.app import RunningApi
    from services.dispatcher.channels.base import Context
    from services.dispatcher.service import Clients, Dispatcher
    from services.logsink.sink import LogSink

log = structlog.get_logger(__name__)


def controlplane(settings: Settings) -> ControlPlane:
    """SQLite under the data dir by default, PostgreSQL when `CC_DATABASE_URL` says so."""
    if settings.database_url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    return ControlPlane(make_engine(settings.database_url))


def rate_limiter(settings: Settings) -> RateLimiter:
    """Redis when `CC_REDIS_URL` is set (shared by replicas), else this process's memory."""
    if settings.redis_url:
        return RedisRateLimiter(settings.redis_url)
    return MemoryRateLimiter()


def clickhouse(settings: Settings) -> ClickHouse:
    """chDB under the data dir by default, a ClickHouse server for `http(s)://` URLs."""
    if settings.clickhouse_url.startswith("chdb://"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    return ClickHouse(settings.clickhouse_url)


def key_authenticator(settings: Settings, cp: ControlPlane) -> KeyAuthenticator:
    """Key verification under the server's secret key."""
    return KeyAuthenticator(cp, require_secret_key(settings), settings.key_cache_s)


def embedded_broker(settings: Settings) -> EmbeddedBroker:
    """The Kafka-protocol broker `up` runs when no `CC_KAFKA_BOOTSTRAP` is given."""
    return EmbeddedBroker(settings.kafka_port, settings.data_dir / "broker.log")


async def api_deps(settings: Settings, bootstrap: str) -> Deps:
    """The API's adapters, connected, with migrations applied and topics created."""
    secret_key = require_secret_key(settings)  # before anything is connected
    cp = controlplane(settings)
    applied = await cp.migrate(now_ms())
    ch = clickhouse(settings)
    ch_applied = await ch.migrate()
    created = await kafka.ensure_topics(
        bootstrap, settings.kafka_partitions, retry_tiers=len(settings.retry_delays_s)
    )
    producer = KafkaClients(bootstrap).request_producer()
    await producer.start()
    partitions = len(await producer.partitions_for(topics.EXECUTIONS))
    log.info(
        "api.prepared",
        sql_migrations=applied,
        clickhouse_migrations=ch_applied,
        topics_created=created,
        partitions=partitions,
    )
    return Deps(
        producer=producer,
        visibility=Visibility(ch, partitions),
        settings=settings,
        controlplane=cp,
        auth=key_authenticator(settings, cp),
        limiter=rate_limiter(settings),
        clickhouse=ch,
        kafka_bootstrap=bootstrap,
        cursor_key=derive_key(secret_key, "cursor"),
        sealing_key=sealing_key(secret_key),
        clock=system_clock,
    )


async def api(settings: Settings, bootstrap: str) -> "RunningApi":
    """The API, serving on `CC_HTTP_HOST:CC_HTTP_PORT`."""
    from services.api.app import serve

    return await serve(await api_deps(settings, bootstrap))


def log_sink(
    settings: Settings, bootstrap: str, ch: ClickHouse, dedup_scope: str | None = None
) -> "LogSink":
    """The log sink on `ch`; `dedup_scope` replaces the configured one (see SinkConfig)."""
    from services.logsink.sink import LogSink

    config = settings.logsink
    if dedup_scope is not None:
        config = dataclasses.replace(config, dedup_scope=dedup_scope)
    return LogSink(config, ch, KafkaClients(bootstrap))


@asynccontextmanager
async def standalone_log_sink(settings: Settings) -> AsyncIterator["LogSink"]:
    """The log sink with a ClickHouse client of its own, migrated, and the topics created."""
    bootstrap = settings.kafka_bootstrap or ""
    ch = clickhouse(settings)
    try:
        await ch.migrate()
        await kafka.ensure_topics(bootstrap, settings.kafka_partitions)
        yield log_sink(settings, bootstrap, ch)
    finally:
        ch.close()


@asynccontextmanager
async def delivery_context(settings: Settings) -> AsyncIterator["Context"]:
    """What the channels send with: the egress-guarded HTTP session and the mail settings."""
    from services.common.egress import parse_cidrs
    from services.dispatcher.channels import email
    from services.dispatcher.channels.base import Context
    from services.dispatcher.egress import guarded_session

    session = guarded_session(parse_cidrs(settings.egress_allow_cidrs))
    base_url = settings.public_base_url or f"http://127.0.0.1:{settings.http_port}"
    if not settings.public_base_url:
        hint = "set CC_PUBLIC_BASE_URL for the log links in emails and chat messages"
        log.warning("dispatcher.no_public_base_url", using=base_url, hint=hint)
    try:
        yield Context(
            http=session, timeout_s=settings.dispatcher.timeout_s, public_base_url=base_url,
            smtp_url=settings.smtp_url, email_from=settings.email_from,
            smtp_tls=email.tls_context(settings.smtp_ca_file),
            pagerduty_url=settings.pagerduty_url,
        )  # fmt: skip
    finally:
        await session.close()


@asynccontextmanager
async def dispatcher(settings: Settings) -> AsyncIterator[tuple["Dispatcher", "Clients"]]:
    """The dispatcher and the clients it runs with, the topics created, and a control plane to
    disable subscriptions whose receivers answer 410."""
    from services.dispatcher.gone import Disabler
    from services.dispatcher.service import Dispatcher, connect

    kafka_clients = KafkaClients(settings.kafka_bootstrap or "")
    await kafka.ensure_topics(
        kafka_clients.bootstrap,
        settings.kafka_partitions,
        retry_tiers=len(settings.retry_delays_s),
    )
    partitions = await _partitions(kafka_clients, topics.SUBSCRIPTIONS)
    cp = controlplane(settings)
    try:
        async with delivery_context(settings) as context:
            on_gone = Disabler(cp, partitions)
            service = Dispatcher(settings, settings.dispatcher, on_gone)
            yield service, connect(settings.dispatcher, kafka_clients, context)
    finally:
        await cp.close()


async def _partitions(clients: KafkaClients, topic: str) -> list[int]:
    """The partition numbers of `topic`, asked of a short-lived producer."""
    producer = clients.producer()
    await producer.start()
    try:
        return sorted(await producer.partitions_for(topic))
    finally:
        await producer.stop()


def run_alerts(settings: Settings) -> int:
    """Run the alert engine in the foreground (faust owns the event loop); its exit status."""
    from services.alerts.app import run_worker

    return run_worker(settings, settings.alerts, KafkaClients(settings.kafka_bootstrap or ""))
