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
this module names the clients it needs and runs the whole from start to stop (the wiring makes
the clients).
"""

import asyncio
import contextlib
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from schemas import topics
from services.common.clock import Clock, system_clock
from services.common.config import Settings, require_secret_key
from services.common.kafkaclients import KafkaClients
from services.common.sealing import sealing_key
from services.common.workers import DispatcherConfig
from services.dispatcher import retry
from services.dispatcher.broker import Consumer, Producer
from services.dispatcher.channels.base import Context
from services.dispatcher.current import Subscriptions
from services.dispatcher.decision import State
from services.dispatcher.journal import Follower, Journal
from services.dispatcher.loop import FETCH_WAIT_MS, Loop, Rebalance
from services.dispatcher.progress import Lanes
from services.dispatcher.publisher import Publisher
from services.dispatcher.sender import CHANNELS, OnGone, Send, Sender

log = structlog.get_logger(__name__)


@dataclass
class Clients:
    """What the dispatcher talks to; `run` starts and stops them."""

    consumer: Consumer  # the group member over `notifications` and the retry tiers
    producer: Producer
    journal_reader: Consumer  # reads `delivery-log`'s tail at start and at each assignment
    subscriptions_reader: Consumer  # follows `subscriptions`
    context: Context  # the channels' HTTP session and settings


def connect(config: DispatcherConfig, kafka: KafkaClients, context: Context) -> Clients:
    """The dispatcher's clients of the cluster `kafka` makes clients for, with the channels'
    `context` (in a running event loop: aiokafka clients bind to it)."""

    def reader(**options: Any) -> Consumer:
        consumer: Consumer = kafka.consumer(enable_auto_commit=False, **options)
        return consumer

    consumer = kafka.consumer(
        group_id=config.group, enable_auto_commit=False, auto_offset_reset="earliest",
        max_poll_records=2000, session_timeout_ms=10_000, heartbeat_interval_ms=1_000,
        rebalance_timeout_ms=10_000, fetch_max_wait_ms=FETCH_WAIT_MS,
    )  # fmt: skip
    return Clients(
        # The journal waits longer between fetches: it reads a tail at once, nobody waits for it
        # record by record, and every waiting fetch costs the embedded broker CPU until its wait
        # is up.
        consumer, kafka.producer(), reader(fetch_max_wait_ms=200),
        reader(metadata_max_age_ms=5000), context,
    )  # fmt: skip


class Dispatcher:
    """Consumes `notifications` and the retry tiers; delivers; records every attempt."""

    def __init__(
        self,
        settings: Settings,
        config: DispatcherConfig,
        on_gone: OnGone | None = None,
        rng: random.Random | None = None,
        *,
        clock: Clock = system_clock,
        channels: Mapping[str, Send] = CHANNELS,
    ) -> None:
        self.settings = settings
        self.config = config
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

    async def run(self, stop: asyncio.Event, clients: Clients) -> None:
        """Deliver until `stop` is set; then let running attempts end briefly and commit."""
        loop = self.loop(clients)
        journal = Follower(clients.journal_reader, self.journal, self.config.journal_tail)
        await journal.start()
        reading = asyncio.create_task(journal.run(stop))
        await journal.caught_up()
        log.info("dispatcher.journal_read", records=journal.records)
        known = asyncio.Event()
        follower = asyncio.create_task(
            self.subscriptions.follow(clients.subscriptions_reader, known, stop)
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(known.wait(), 30)
        await clients.producer.start()
        await clients.consumer.start()
        clients.consumer.subscribe(
            [topics.NOTIFICATIONS, *self.schedule.tiers()],
            listener=Rebalance(loop, self.config.drain_s, journal.caught_up),
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
            for task in (follower, reading):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            log.info("dispatcher.stopped")
