"""The dispatcher: `notifications` and the retry tiers in, deliveries and `delivery-log` out.

The poll loop never waits on a receiver. Each record goes to the lane of its destination
(`progress.Lanes`: bounded in flight and queued per destination). A record that finds its lane
full waits for it (its partition paused) while the lane moves; if the lane has stalled (no
attempt ended for `lane_stall_s`: a slow or dead receiver) it waits on the first delay tier
instead (the same attempt, due a tier's delay later), so one receiver never holds up a partition.
A partition's offset is committed only up to its highest contiguous finished record.

Before its request goes out, an attempt's start is on `delivery-log`. It ends in one of three
ways, each made durable before the record counts as finished: delivered or failed for good (an
attempt record on `delivery-log`), or to be retried (the attempt record, then the same
notification with the next attempt number and its due time on a delay tier). Tier records are
read in log order; a tier partition whose head is not due is paused until it is (see `retry`).
A restart therefore redoes exactly the unfinished records, and the journal (`journal`) keeps it
from making an attempt twice: a retry waiting on a tier is neither lost nor doubled, and an
attempt that was in flight at a kill counts as made.

What becomes of each record is decided in `decision` (pure); `loop` carries the decisions out;
this module builds the clients and runs the whole from start to stop.
"""

import asyncio
import contextlib
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer

from schemas import topics
from services.common.clock import Clock, system_clock
from services.common.config import Settings, env_number, require_secret_key
from services.common.egress import parse_cidrs
from services.common.kafka import make_producer
from services.common.sealing import sealing_key
from services.dispatcher import egress, retry
from services.dispatcher.broker import Consumer, Producer
from services.dispatcher.channels import email
from services.dispatcher.channels.base import Context
from services.dispatcher.current import Subscriptions
from services.dispatcher.decision import State
from services.dispatcher.journal import Journal, read_tail
from services.dispatcher.loop import Loop, Rebalance
from services.dispatcher.progress import Lanes
from services.dispatcher.publisher import Publisher
from services.dispatcher.sender import CHANNELS, OnGone, Send, Sender

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class DispatcherConfig:
    """The dispatcher's own knobs (environment `CC_DISPATCHER_*`, `CC_DELIVERY_TIMEOUT_SECONDS`)."""

    group: str = "codecourier-dispatcher"
    in_flight_per_lane: int = 16
    queued_per_lane: int = 2000
    commit_interval_s: float = 0.2
    timeout_s: float = 30.0
    drain_s: float = 5.0
    journal_tail: int = 10_000  # delivery-log records per partition read back at start
    recording: int = 4000  # attempts answered and not yet on delivery-log, at most
    lane_stall_s: float = 1.0  # a full lane with no attempt ended for this long is stalled

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "DispatcherConfig":
        """Read the overrides that are set; the rest keep their defaults."""
        in_flight = env_number(env, "CC_DISPATCHER_LANE_IN_FLIGHT", cls.in_flight_per_lane)
        queued = env_number(env, "CC_DISPATCHER_LANE_QUEUE", cls.queued_per_lane)
        return cls(
            group=env.get("CC_DISPATCHER_GROUP") or cls.group,
            in_flight_per_lane=int(in_flight),
            queued_per_lane=int(queued),
            timeout_s=env_number(env, "CC_DELIVERY_TIMEOUT_SECONDS", cls.timeout_s),
            lane_stall_s=env_number(env, "CC_DISPATCHER_LANE_STALL_SECONDS", cls.lane_stall_s),
        )


@dataclass
class Clients:
    """What the dispatcher talks to; `run` starts and stops them."""

    consumer: Consumer  # the group member over `notifications` and the retry tiers
    producer: Producer
    journal_reader: Consumer  # reads the tail of `delivery-log` once, at start
    subscriptions_reader: Consumer  # follows `subscriptions`
    context: Context  # the channels' HTTP session and settings


def connect(settings: Settings, config: DispatcherConfig, bootstrap: str) -> Clients:
    """The dispatcher's clients for the broker at `bootstrap` (in a running event loop: the
    HTTP session needs one)."""

    def reader(**options: Any) -> Consumer:
        consumer: Consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, **options
        )
        return consumer

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=config.group,
        enable_auto_commit=False, auto_offset_reset="earliest", max_poll_records=2000,
        session_timeout_ms=10_000, heartbeat_interval_ms=1_000, rebalance_timeout_ms=10_000,
        fetch_max_wait_ms=25,
    )  # fmt: skip
    session = egress.guarded_session(parse_cidrs(settings.egress_allow_cidrs))
    context = Context(
        http=session, timeout_s=config.timeout_s,
        public_base_url=settings.public_base_url or f"http://127.0.0.1:{settings.http_port}",
        smtp_url=settings.smtp_url, email_from=settings.email_from,
        smtp_tls=email.tls_context(settings.smtp_ca_file),
    )  # fmt: skip
    if not settings.public_base_url:
        hint = "set CC_PUBLIC_BASE_URL for the log links in emails and Slack"
        log.warning("dispatcher.no_public_base_url", using=context.public_base_url, hint=hint)
    return Clients(
        consumer, make_producer(bootstrap), reader(fetch_max_wait_ms=25),
        reader(metadata_max_age_ms=5000), context,
    )  # fmt: skip


class Dispatcher:
    """Consumes `notifications` and the retry tiers; delivers; records every attempt."""

    def __init__(
        self,
        settings: Settings,
        config: DispatcherConfig,
        bootstrap: str,
        on_gone: OnGone | None = None,
        rng: random.Random | None = None,
        *,
        clock: Clock = system_clock,
        channels: Mapping[str, Send] = CHANNELS,
    ) -> None:
        self.settings = settings
        self.config = config
        self.bootstrap = bootstrap
        self.schedule = retry.Schedule(settings.retry_delays_s)
        self.key = sealing_key(require_secret_key(settings))
        self.on_gone = on_gone
        self.rng = rng or random.Random()  # noqa: S311 (jitter, not a secret)
        self.clock = clock
        self.channels = channels
        self.journal = Journal()
        self.subscriptions = Subscriptions()

    def loop(self, clients: Clients) -> Loop:
        """The poll loop over `clients` (not started)."""
        config = self.config
        lanes = Lanes(config.in_flight_per_lane, config.queued_per_lane, config.lane_stall_s)
        state = State(self.schedule, self.journal, lanes, self.rng)
        sender = Sender(clients.context, self.key, self.subscriptions, self.channels,
                        self.on_gone, self.clock)  # fmt: skip
        publisher = Publisher(clients.producer)
        return Loop(state, lanes, clients.consumer, publisher, sender, self.clock,
                    config.recording)  # fmt: skip

    async def run(self, stop: asyncio.Event, clients: Clients | None = None) -> None:
        """Deliver until `stop` is set; then let running attempts end briefly and commit."""
        clients = clients or connect(self.settings, self.config, self.bootstrap)
        loop = self.loop(clients)
        for done in await read_tail(clients.journal_reader, self.config.journal_tail):
            self.journal.note(done)
        known = asyncio.Event()
        follower = asyncio.create_task(
            self.subscriptions.follow(clients.subscriptions_reader, known, stop)
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(known.wait(), 30)
        await clients.producer.start()
        await clients.consumer.start()
        clients.consumer.subscribe(
            [topics.NOTIFICATIONS, *self.schedule.tiers()], listener=Rebalance(loop)
        )
        log.info("dispatcher.started", group=self.config.group, tiers=self.schedule.tiers())
        try:
            await loop.run(stop, self.config.commit_interval_s)
        finally:
            await loop.drain(self.config.drain_s)
            await loop.close()
            await clients.consumer.stop()
            await clients.producer.stop()
            await clients.context.http.close()
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower
            log.info("dispatcher.stopped")
