"""The all-in-one runner (`codecourier up`): embedded broker, chDB, SQLite and every service.

Only `up` receives a terminal's Ctrl-C (its children run in sessions of their own) and it
orchestrates the stop (`services.localstop`); a crashed service is restarted with back-off
(`services.supervisor`), the embedded broker included.
"""

import asyncio
import contextlib
import signal
from collections.abc import Callable, Mapping
from pathlib import Path

import msgspec
import structlog

from services import wiring
from services.api.app import RunningApi
from services.api.keys import issue_key
from services.api.outbox import publish_all
from services.common import apikeys, kafka
from services.common.auth import check_usable
from services.common.clock import now_ms
from services.common.config import Settings, ensure_secret_key
from services.common.controlplane import new_user
from services.common.ids import random_base62
from services.common.localfile import (
    ConsoleCredentials,
    LocalCredentials,
    read_credentials,
    write_credentials,
)
from services.common.passwords import generate_password, hash_password, verify_password
from services.common.processes import die_with_parent
from services.localstop import StopSignals, stop_stack
from services.supervisor import RESTARTS, Child, Crashed, Job, Service

log = structlog.get_logger(__name__)

# The services that consume from the broker, and how long a broker restart waits for their runs
# to end before it makes the topics anyway.
CONSUMERS = ("logsink", "alerts", "dispatcher")
HOLD_TIMEOUT_S = 15.0
ABANDON_TIMEOUT_S = 5.0  # for a cancelled run to end
RESTARTING = "CodeCourier is (re)starting its broker; retry in a few seconds."

LOCAL_PROJECT_PLAN = "enterprise"
LOCAL_OWNER_EMAIL = "owner@codecourier.local"
CHILD_TERM_TIMEOUT_S = 10.0


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


async def _console_owner(
    api: RunningApi, project_id: str, url: str, previous: LocalCredentials | None
) -> ConsoleCredentials:
    """The local project's owner in the console: created with a generated password on the
    first start; later starts keep the user and its password (None once changed there)."""
    cp = api.deps.controlplane
    user = await cp.find_user(LOCAL_OWNER_EMAIL)
    password = previous.console.password if previous and previous.console else None
    if user is None:
        password = generate_password()
        user = new_user(LOCAL_OWNER_EMAIL, await hash_password(password), now_ms())
        await cp.create_user(user)
    elif password and not await verify_password(user.password_hash, password):
        password = None
    await cp.add_member(user.id, project_id, "owner", now_ms())  # a new project: join it
    return ConsoleCredentials(url=url, email=LOCAL_OWNER_EMAIL, password=password)


def _console_lines(console: ConsoleCredentials | None) -> list[str]:
    if console is None:
        return []
    password = console.password or "(set earlier; not known to this start)"
    return [
        f"  Console      {console.url}",
        f"  Email        {console.email}",
        f"  Password     {password}",
    ]


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
            *_console_lines(creds.console),
            f"  Saved to     {path} (mode 0600)",
            "",
            f"  Try: curl -H 'Authorization: Bearer {creds.apiKey}' {creds.baseUrl}/api/v1/whoami",
            "  Stop with Ctrl-C.",
            "",
        ]
    )


def alerts_env(settings: Settings, bootstrap: str) -> dict[str, str]:
    """The alert engine's environment here: with the embedded broker, whose changelogs live in
    memory, its tables do too (a store on disk would outlive the changelogs it belongs to, and
    faust refuses a store that is ahead of its changelog)."""
    env = {"CC_KAFKA_BOOTSTRAP": bootstrap}
    if not settings.kafka_bootstrap:
        env["CC_ALERTS_STORE"] = "memory://"
    return env


class LocalStack:
    """The running pieces of `up`: the broker, the API and the supervised services."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.broker = wiring.embedded_broker(settings)
        self.bootstrap = settings.kafka_bootstrap or ""
        self.api: RunningApi | None = None
        self.services: dict[str, Service] = {}

    @property
    def embedded_broker(self) -> bool:
        """Whether `up` runs the broker itself."""
        return not self.settings.kafka_bootstrap

    async def start(self, previous: LocalCredentials | None) -> LocalCredentials:
        """Start the broker, the API and every service; the credentials to print."""
        if self.embedded_broker:
            self.bootstrap = await self.broker.start()
        self.api = api = await wiring.api(self.settings, self.bootstrap)
        if self.embedded_broker:
            await self._republish()
        if api.deps.clickhouse.embedded:
            # chDB admits one process per data directory: the sink shares the API's client.
            self._add("logsink", self._run_sink)
        else:
            self._add("logsink", self._child(["logsink"], self._sink_env))
        # faust owns its event loop: the alert engine runs as a child process.
        alerts = alerts_env(self.settings, self.bootstrap)
        self._add("alerts", self._child(["alerts"], lambda: alerts))
        host = self.settings.http_host
        host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        base_url = f"http://{host}:{api.port}"
        dispatcher = self._dispatcher_env(base_url)
        self._add("dispatcher", self._child(["dispatcher"], lambda: dispatcher))
        if self.embedded_broker:
            self._add("broker", self._watch_broker)
        project_id, api_key = await _local_key(api, previous)
        console = await _console_owner(api, project_id, f"{base_url}/", previous)
        admin_token = self.settings.admin_token or ""
        return LocalCredentials(base_url, admin_token, project_id, api_key, console)

    def _add(self, name: str, job: Job) -> None:
        service = Service(name, job)
        self.services[name] = service
        service.start()

    def _child(self, args: list[str], env: Callable[[], Mapping[str, str]]) -> Child:
        return Child(args, env, min(CHILD_TERM_TIMEOUT_S, self.settings.stop_timeout_s / 3))

    def _dispatcher_env(self, base_url: str) -> dict[str, str]:
        return {
            "CC_KAFKA_BOOTSTRAP": self.bootstrap,
            "CC_EGRESS_ALLOW_CIDRS": ",".join(self.settings.egress_allow_cidrs),
            "CC_PUBLIC_BASE_URL": self.settings.public_base_url or base_url,
        }

    @property
    def dedup_scope(self) -> str:
        """The log sink's deduplication scope: new at every start of the embedded broker, whose
        offsets begin at 0 again (see SinkConfig)."""
        return f"{self.broker.epoch}:" if self.embedded_broker else ""

    def _sink_env(self) -> dict[str, str]:
        return {"CC_KAFKA_BOOTSTRAP": self.bootstrap, "CC_LOGSINK_DEDUP_SCOPE": self.dedup_scope}

    async def _run_sink(self, stop: asyncio.Event) -> None:
        assert self.api is not None
        ch = self.api.deps.clickhouse
        sink = wiring.log_sink(self.settings, self.bootstrap, ch, self.dedup_scope)
        visibility = self.api.deps.visibility
        visibility.follow(sink.visibility_bound)  # one process: no watermark read per request
        try:
            await sink.run(stop)
        except BaseException:
            # A crashed or abandoned sink must leave its group, or it would keep its partitions
            # from the next; a client that hangs on a broker gone away is left behind.
            for client in (sink.consumer, sink.producer):
                if client is not None:
                    with contextlib.suppress(BaseException):
                        await asyncio.wait_for(client.stop(), ABANDON_TIMEOUT_S)
            raise
        finally:
            visibility.unfollow(sink.visibility_bound)

    async def _restart_broker(self) -> None:
        """Start the broker again on the same port, with every topic and the subscriptions, and
        restart the consumers: their groups and offsets died with the old broker."""
        assert self.api is not None
        # Closed until the subscriptions are back: an execution taken before their markers
        # would not be alerted on (a subscription applies to executions after its marker).
        if self.api.deps.intake.open:  # a stop already under way keeps its own reason
            self.api.deps.intake.close(RESTARTING)
        # The consumers are held while the topics are made: a client asking the new, empty
        # broker for a topic first has it created with the broker's own partition count (the
        # topics made again below), and none may start on such a topic.
        consumers = [self.services[name] for name in CONSUMERS]
        for service in consumers:
            service.hold()
        try:
            await self.broker.start()
            # Topics first: a run ending commits its offsets, which waits for the topics.
            await kafka.ensure_topics(
                self.bootstrap,
                self.settings.kafka_partitions,
                retry_tiers=len(self.settings.retry_delays_s),
                recreate_miscounted=True,
            )
            late = await _held(consumers, HOLD_TIMEOUT_S)
            if late:  # hung on the old broker (a producer's flush, a commit): their runs go
                for service in late:
                    service.abandon()
                await _held(late, ABANDON_TIMEOUT_S)
            await self._republish()
        finally:  # a failed restart must not leave them held: the next try may skip all this
            for service in consumers:
                service.release()
        log.warning("local.broker_restarted", bootstrap=self.bootstrap,
                    late=[service.name for service in late])  # fmt: skip

    async def _republish(self) -> None:
        """Rebuild the compacted topics (subscriptions, silences and alert acknowledgements:
        every outbox message is published again) on a broker that starts empty. Events wait
        meanwhile: a subscription applies to the executions after its marker."""
        assert self.api is not None
        intake = self.api.deps.intake
        reason = RESTARTING
        intake.close(reason)
        try:
            count = await self.api.deps.controlplane.republish_outbox()
            await publish_all(self.api.deps)
        finally:
            if intake.reason == reason:  # a stop that began meanwhile keeps it closed
                intake.reopen()
        log.info("local.outbox_republished", messages=count)

    async def _watch_broker(self, stop: asyncio.Event) -> None:
        """Watch the embedded broker; once it died (this run is then a restart), start it again."""
        if self.broker.exited() is not None:
            await self._restart_broker()
        while not stop.is_set():
            status = self.broker.exited()
            if status is not None:
                raise Crashed(f"the embedded broker exited with status {status}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)


async def _held(services: list[Service], timeout_s: float) -> list[Service]:
    """Wait up to `timeout_s` for held services' runs to end; the services still running."""
    waits = {asyncio.create_task(service.idle.wait()): service for service in services}
    _, pending = await asyncio.wait(waits, timeout=timeout_s)
    for task in pending:
        task.cancel()
    return [waits[task] for task in pending]


def _local_settings(settings: Settings) -> Settings:
    settings = ensure_secret_key(settings)
    previous = read_credentials(settings.data_dir)
    admin_token = settings.admin_token or (previous.adminToken if previous else None)
    return msgspec.structs.replace(
        settings,
        admin_token=admin_token or "cc_admin_" + random_base62(40),
        # Development receivers live on this machine; production keeps loopback refused.
        egress_allow_cidrs=settings.egress_allow_cidrs or ("127.0.0.0/8", "::1/128"),
    )


async def run_local(settings: Settings) -> int:
    """Run the whole stack in the foreground until Ctrl-C or SIGTERM; 0 after a clean stop."""
    die_with_parent(signal.SIGTERM)  # our parent (make, a shell) dying stops us cleanly
    settings = _local_settings(settings)
    previous = read_credentials(settings.data_dir)
    signals = StopSignals()
    signals.install(asyncio.get_running_loop())
    stack = LocalStack(settings)
    for name in ("logsink", "alerts", "dispatcher", "broker"):
        RESTARTS.labels(service=name)  # every series exists from the start, at 0
    starting = asyncio.create_task(stack.start(previous))
    requested = asyncio.create_task(signals.requested.wait())
    try:
        await asyncio.wait([starting, requested], return_when=asyncio.FIRST_COMPLETED)
        if starting.done():
            creds = starting.result()
            path = write_credentials(settings.data_dir, creds)
            print(banner(creds, path), flush=True)
            await requested
    finally:
        requested.cancel()
        if not starting.done():
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await starting
        clean = await stop_stack(stack, signals)
    return 0 if clean else 1
