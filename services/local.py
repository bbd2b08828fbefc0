"""The all-in-one runner (`codecourier up`): embedded broker, chDB, SQLite and the API."""

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import msgspec
import structlog

from services.api.app import RunningApi, prepare, serve
from services.api.keys import issue_key
from services.common import apikeys
from services.common.auth import check_usable
from services.common.clock import now_ms
from services.common.config import Settings, ensure_secret_key
from services.common.ids import random_base62
from services.common.kafka import EmbeddedBroker, die_with_parent
from services.common.localfile import LocalCredentials, read_credentials, write_credentials
from services.logsink.sink import LogSink, SinkConfig

log = structlog.get_logger(__name__)

LOCAL_PROJECT_PLAN = "enterprise"


async def _local_key(api: RunningApi, previous: LocalCredentials | None) -> tuple[str, str]:
    """Reuse the saved project key while it still works, else create a project and key."""
    deps = api.deps
    if previous is not None and apikeys.is_well_formed(previous.apiKey):
        digest = deps.auth.digest(previous.apiKey)
        key = await deps.controlplane.find_key(digest)
        if key is not None and key.project_id == previous.projectId:
            with contextlib.suppress(Exception):
                check_usable(key, now_ms())
                return previous.projectId, previous.apiKey
    project = await deps.controlplane.create_project("local", LOCAL_PROJECT_PLAN, now_ms())
    key_created = await issue_key(deps, project.id, "local", ["*"], None)
    return project.id, key_created.secret


def banner(creds: LocalCredentials, path: Path) -> str:
    """What `up` prints once the stack is ready."""
    return "\n".join(
        [
            "",
            "CodeCourier is running (all-in-one mode)",
            f"  Base URL     {creds.baseUrl}/api/v1",
            f"  Admin token  {creds.adminToken}",
            f"  Project      {creds.projectId} ({LOCAL_PROJECT_PLAN} plan)",
            f"  API key      {creds.apiKey}",
            f"  Saved to     {path} (mode 0600)",
            "",
            f"  Try: curl -H 'Authorization: Bearer {creds.apiKey}' {creds.baseUrl}/api/v1/whoami",
            "  Stop with Ctrl-C.",
            "",
        ]
    )


async def _supervised(job: Coroutine[Any, Any, None], stop: asyncio.Event) -> None:
    """Run a service; if it dies, stop the whole stack rather than limp on without it."""
    try:
        await job
    except Exception:
        log.exception("local.service_crashed")
        stop.set()
        raise


async def _child_service(args: list[str], env: dict[str, str], stop: asyncio.Event) -> None:
    """Run `codecourier <args>` as a child process until `stop`, then SIGTERM it (its metrics
    are not served: the children would contend for one CC_METRICS_PORT)."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli", *args,
        env={**os.environ, "CC_METRICS_PORT": "", **env},
        preexec_fn=die_with_parent,
    )  # fmt: skip
    waiter = asyncio.create_task(child.wait())
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait([waiter, stopper], return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    if child.returncode is None:
        child.terminate()
        await waiter
    elif not stop.is_set():
        raise RuntimeError(f"codecourier {' '.join(args)} exited with {child.returncode}")


def alerts_env(settings: Settings, bootstrap: str) -> dict[str, str]:
    """The alert engine's environment here: with the embedded broker, whose changelogs live in
    memory, its tables do too (a store on disk would outlive the changelogs it belongs to, and
    faust refuses a store that is ahead of its changelog)."""
    env = {"CC_KAFKA_BOOTSTRAP": bootstrap}
    if not settings.kafka_bootstrap:
        env["CC_ALERTS_STORE"] = "memory://"
    return env


async def _watch_broker(broker: EmbeddedBroker, stop: asyncio.Event) -> None:
    while not stop.is_set():
        if broker.process is not None and broker.process.poll() is not None:
            log.error("broker.exited", status=broker.process.returncode)
            stop.set()
            return
        await asyncio.sleep(0.5)


async def run_local(settings: Settings) -> int:
    """Run the whole stack in the foreground until Ctrl-C or SIGTERM."""
    die_with_parent(signal.SIGTERM)  # our parent (make, a shell) dying stops us cleanly
    settings = ensure_secret_key(settings)
    previous = read_credentials(settings.data_dir)
    admin_token = settings.admin_token or (previous.adminToken if previous else None)
    settings = msgspec.structs.replace(
        settings,
        admin_token=admin_token or "cc_admin_" + random_base62(40),
        # Development receivers live on this machine; production keeps loopback refused.
        egress_allow_cidrs=settings.egress_allow_cidrs or ("127.0.0.0/8", "::1/128"),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    broker = EmbeddedBroker(settings.kafka_port, settings.data_dir / "broker.log")
    api: RunningApi | None = None
    sink_task: asyncio.Task[None] | None = None
    alerts_task: asyncio.Task[None] | None = None
    dispatcher_task: asyncio.Task[None] | None = None
    try:
        bootstrap = settings.kafka_bootstrap or await broker.start()
        api = await serve(await prepare(settings, bootstrap))
        if api.deps.clickhouse.embedded:
            # chDB admits one process per data directory: the sink shares the API's client.
            sink = LogSink(SinkConfig(bootstrap), api.deps.clickhouse).run(stop)
        else:
            sink = _child_service(["logsink"], {"CC_KAFKA_BOOTSTRAP": bootstrap}, stop)
        sink_task = asyncio.create_task(_supervised(sink, stop))
        # faust owns its event loop: the alert engine runs as a child process.
        alerts = _child_service(["alerts"], alerts_env(settings, bootstrap), stop)
        alerts_task = asyncio.create_task(_supervised(alerts, stop))
        host = "127.0.0.1" if settings.http_host in ("0.0.0.0", "::") else settings.http_host
        dispatcher_env = {
            "CC_KAFKA_BOOTSTRAP": bootstrap,
            "CC_EGRESS_ALLOW_CIDRS": ",".join(settings.egress_allow_cidrs),
            "CC_PUBLIC_BASE_URL": settings.public_base_url or f"http://{host}:{api.port}",
        }
        dispatcher = _child_service(["dispatcher"], dispatcher_env, stop)
        dispatcher_task = asyncio.create_task(_supervised(dispatcher, stop))
        project_id, api_key = await _local_key(api, previous)
        creds = LocalCredentials(
            f"http://{host}:{api.port}", settings.admin_token or "", project_id, api_key
        )
        path = write_credentials(settings.data_dir, creds)
        print(banner(creds, path), flush=True)
        watcher = asyncio.create_task(_watch_broker(broker, stop))
        await stop.wait()
        watcher.cancel()
        return 1 if broker.process is not None and broker.process.poll() is not None else 0
    finally:
        log.info("local.stopping")
        stop.set()
        for task in (sink_task, alerts_task, dispatcher_task):
            if task is not None:
                with contextlib.suppress(Exception):
                    await task
        if api is not None:
            await api.stop()
        broker.stop()
