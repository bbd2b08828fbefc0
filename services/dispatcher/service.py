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
"""

import asyncio
import contextlib
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import msgspec
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata, TopicPartition
from prometheus_client import Counter, Histogram

from schemas import topics
from schemas.deliveries import DeliveryAttempt, Outcome
from schemas.destinations import EmailDestination, RecordDecoder, WebhookDestination
from schemas.notifications import NotificationRecord
from services.common.config import Settings, env_number, require_secret_key
from services.common.egress import parse_cidrs
from services.common.kafka import (
    REFUSED_RECORD_ERRORS,
    dead_letter_headers,
    describe_error,
    make_producer,
)
from services.common.sealing import sealing_key, unseal
from services.dispatcher import egress, retry
from services.dispatcher.channels import email, slack, webhook
from services.dispatcher.channels.base import Context, Result, Secrets
from services.dispatcher.current import Subscriptions
from services.dispatcher.journal import STARTED, Journal, Starts, read_tail
from services.dispatcher.progress import Job, Lanes, OffsetTracker, Prepare

log = structlog.get_logger(__name__)

ATTEMPTS = Counter("cc_dispatcher_attempts", "Delivery attempts", ["channel", "outcome"])
DEAD_LETTERS = Counter("cc_dispatcher_dead_letters", "Records sent to deliveries.dlq")
RETRY_DEAD_LETTERS = Counter(
    "cc_dispatcher_retry_dead_letters", "Retry-tier records sent to deliveries.retry.dlq"
)
DEFERRED = Counter("cc_dispatcher_deferred", "Attempts put off because their lane was full")
ATTEMPT_SECONDS = Histogram("cc_dispatcher_attempt_seconds", "Attempt duration", ["channel"])

Send = Callable[[NotificationRecord, Secrets, Context], Awaitable[Result]]
CHANNELS: dict[str, Send] = {"webhook": webhook.send, "email": email.send, "slack": slack.send}
OnGone = Callable[[NotificationRecord, str], Awaitable[None]]

_decoder = RecordDecoder(NotificationRecord)
_encoder = msgspec.json.Encoder(decimal_format="number")


def decode(value: bytes | None) -> NotificationRecord | Exception:
    """A topic record as a notification, or why it is not one (whatever raised: a deep value
    raises RecursionError, not a msgspec error)."""
    try:
        return _decoder.decode(value or b"")
    except Exception as exc:
        return exc


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
class _Partition:
    """What the loop holds of one assigned partition."""

    tracker: OffsetTracker = field(default_factory=OffsetTracker)
    buffer: deque[tuple[ConsumerRecord[bytes, bytes], NotificationRecord | Exception]] = field(
        default_factory=deque
    )
    wake_at: float = 0.0  # monotonic time a tier head falls due


def _is_infrastructure(error: Exception) -> bool:
    """Whether an error is the broker's (waited for), not the record's (a dead letter)."""
    return isinstance(error, KafkaError) and not isinstance(error, REFUSED_RECORD_ERRORS)


def lane_of(record: NotificationRecord) -> str:
    """The destination a record is bounded by: a webhook's origin, else its subscription."""
    if isinstance(record.destination, WebhookDestination):
        parts = urlsplit(record.destination.url)
        return f"webhook {parts.scheme}://{parts.netloc.rpartition('@')[2]}"
    return f"{record.notificationType} {record.subscriptionId}"


def target_of(record: NotificationRecord) -> str:
    """The receiver as the delivery log shows it: no secrets, no query strings."""
    destination = record.destination
    if isinstance(destination, WebhookDestination):
        parts = urlsplit(destination.url)
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{parts.hostname or ''}{port}"
    if isinstance(destination, EmailDestination):
        return ",".join(destination.recipients)
    return "slack incoming webhook"


def open_secrets(record: NotificationRecord, key: bytes, now_ms: int) -> Secrets:
    """The record's sealed secrets, opened; the previous one only while its grace lasts."""
    current = (
        unseal(record.secretCiphertext, key, record.subscriptionId)
        if record.secretCiphertext
        else None
    )
    previous = None
    destination = record.destination
    if isinstance(destination, WebhookDestination):
        sealed, until = destination.previousSecretCiphertext, destination.previousSecretUntilMs
        if sealed and (until or 0) > now_ms:
            previous = unseal(sealed, key, record.subscriptionId)
    return Secrets(current=current, previous=previous)


def attempt_record(
    record: NotificationRecord,
    result: Result,
    outcome: Outcome,
    started_ms: int,
    duration_ms: int,
    next_attempt_ms: int | None,
) -> DeliveryAttempt:
    """The `delivery-log` record of one attempt."""
    first = record.attempt == 1
    return DeliveryAttempt(
        v=1, deliveryId=record.deliveryId, eventId=record.eventId, eventType=record.payload.type,
        subscriptionId=record.subscriptionId, projectId=record.projectId,
        notificationType=record.notificationType, round=record.round, attempt=record.attempt,
        outcome=outcome, attemptedAtMs=started_ms, durationMs=duration_ms,
        target=target_of(record), responseCode=result.status, responseBody=result.body,
        error=result.error, nextAttemptAtMs=next_attempt_ms,
        payload=msgspec.Raw(_encoder.encode(record.payload) if first else b"null"),
    )  # fmt: skip


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, dispatcher: "Dispatcher") -> None:
        self.dispatcher = dispatcher

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.dispatcher.commit()
        for tp in revoked:
            self.dispatcher.parts.pop(tp, None)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        for tp in assigned:
            self.dispatcher.parts[tp] = _Partition()
        log.info(
            "dispatcher.assigned",
            partitions=sorted(f"{tp.topic}/{tp.partition}" for tp in assigned),
        )


class Dispatcher:
    """Consumes `notifications` and the retry tiers; delivers; records every attempt."""

    def __init__(
        self,
        settings: Settings,
        config: DispatcherConfig,
        bootstrap: str,
        on_gone: OnGone | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.config = config
        self.bootstrap = bootstrap
        self.schedule = retry.Schedule(settings.retry_delays_s)
        self.key = sealing_key(require_secret_key(settings))
        self.on_gone = on_gone
        self.rng = rng or random.Random()  # noqa: S311 (jitter, not a secret)
        self.lanes = Lanes(config.in_flight_per_lane, config.queued_per_lane)
        self.parts: dict[TopicPartition, _Partition] = {}
        self.journal = Journal()
        self.starts = Starts(lambda value: self._produce(topics.DELIVERY_LOG, value, None))
        self.subscriptions = Subscriptions()
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self.context: Context | None = None
        self.stopping = False
        self._background: set[asyncio.Task[None]] = set()
        self._recording = asyncio.Semaphore(config.recording)

    # ---- lifecycle -------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until `stop` is set; then let running attempts end briefly and commit."""
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=self.config.group,
            enable_auto_commit=False, auto_offset_reset="earliest", max_poll_records=2000,
            session_timeout_ms=10_000, heartbeat_interval_ms=1_000, rebalance_timeout_ms=10_000,
            fetch_max_wait_ms=25,
        )  # fmt: skip
        self.producer = make_producer(self.bootstrap)
        session = egress.guarded_session(parse_cidrs(self.settings.egress_allow_cidrs))
        self.context = Context(
            http=session, timeout_s=self.config.timeout_s,
            public_base_url=self.settings.public_base_url or f"http://127.0.0.1:{self.settings.http_port}",
            smtp_url=self.settings.smtp_url, email_from=self.settings.email_from,
            smtp_tls=email.tls_context(self.settings.smtp_ca_file),
        )  # fmt: skip
        if not self.settings.public_base_url:
            hint = "set CC_PUBLIC_BASE_URL for the log links in emails and Slack"
            log.warning("dispatcher.no_public_base_url", using=self.context.public_base_url,
                        hint=hint)  # fmt: skip
        for done in await read_tail(self.bootstrap, self.config.journal_tail):
            self.journal.note(done)
        known = asyncio.Event()
        follower = asyncio.create_task(self.subscriptions.follow(self.bootstrap, known, stop))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(known.wait(), 30)
        await self.producer.start()
        await self.consumer.start()
        self.consumer.subscribe(
            [topics.NOTIFICATIONS, *self.schedule.tiers()], listener=_Rebalance(self)
        )
        log.info("dispatcher.started", group=self.config.group, tiers=self.schedule.tiers())
        next_commit = 0.0
        try:
            while not stop.is_set():
                await self._poll()
                if time.monotonic() >= next_commit:
                    await self.commit()
                    next_commit = time.monotonic() + self.config.commit_interval_s
        finally:
            await self.lanes.drain(self.config.drain_s)
            if self._background:
                await asyncio.wait(set(self._background), timeout=self.config.drain_s)
            self.stopping = True
            await self.lanes.cancel()
            for task in list(self._background):
                task.cancel()
            await asyncio.gather(*self._background, return_exceptions=True)
            with contextlib.suppress(KafkaError):
                await self.commit()
            await self.consumer.stop()
            await self.producer.stop()
            await session.close()
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower
            log.info("dispatcher.stopped")

    async def commit(self) -> None:
        """Commit each partition up to its highest contiguous finished record."""
        if self.consumer is None:
            return
        offsets = {}
        for tp, part in self.parts.items():
            offset = part.tracker.take_commit()
            if offset is not None:
                offsets[tp] = OffsetAndMetadata(offset, "")
        if offsets:
            await self.consumer.commit(offsets)

    # ---- reading ---------------------------------------------------------------------------

    async def _poll(self) -> None:
        assert self.consumer is not None
        fetched = await self.consumer.getmany(timeout_ms=self._poll_wait_ms(), max_records=2000)
        for tp, messages in fetched.items():
            part = self.parts.get(tp)
            if part is None:
                continue
            for message in messages:
                part.tracker.add(message.offset)
                part.buffer.append((message, decode(message.value)))
        paused = self.consumer.paused()
        for tp, part in self.parts.items():
            if part.buffer:
                await self._pump(tp, part)
            blocked = bool(part.buffer)
            if blocked and tp not in paused:
                self.consumer.pause(tp)
            elif not blocked and tp in paused:
                self.consumer.resume(tp)

    def _poll_wait_ms(self) -> int:
        """Wait for records, but not past a tier head falling due."""
        wakes = [p.wake_at for p in self.parts.values() if p.buffer and p.wake_at]
        if not wakes:
            return 50
        return max(0, min(50, int((min(wakes) - time.monotonic()) * 1000)))

    async def _pump(self, tp: TopicPartition, part: _Partition) -> None:
        """Hand the partition's buffered records to their lanes, in order, while they fit.

        A record that cannot be handled, whatever raised, is dead-lettered and the partition
        goes on; only the broker (when stopping) and cancellation stop the pump."""
        tier = retry.tier_number(tp.topic)
        part.wake_at = 0.0
        while part.buffer:
            message, record = part.buffer[0]
            try:
                if isinstance(record, Exception):
                    raise record
                if not await self._next(part, tier, message, record):
                    return
            except Exception as exc:
                if self.stopping or _is_infrastructure(exc):
                    raise
                if part.buffer and part.buffer[0][0] is message:
                    part.buffer.popleft()
                await self._dead_letter(message, exc)
                part.tracker.finish(message.offset)

    async def _next(
        self,
        part: _Partition,
        tier: int | None,
        message: ConsumerRecord[bytes, bytes],
        record: NotificationRecord,
    ) -> bool:
        """Take the partition's head record on; False when it must wait (a full lane, a tier
        head not yet due)."""
        now_ms = int(time.time() * 1000)
        if tier is not None:
            enqueued_ms = message.timestamp if message.timestamp > 0 else now_ms
            release = retry.release_at_ms(self.schedule, tier, enqueued_ms, record.dueAtMs)
            if release > now_ms:
                part.wake_at = time.monotonic() + (release - now_ms) / 1000
                return False
            if record.dueAtMs > now_ms:  # a long Retry-After: on to the next tier
                part.buffer.popleft()
                await self._hop(record, record.dueAtMs - now_ms)
                part.tracker.finish(message.offset)
                return True
        key = (record.deliveryId, record.round, record.attempt)
        lane = lane_of(record)  # before the claim: a record without a lane is a dead letter
        if not self.journal.claim(key):  # a second copy of a record being worked on
            part.buffer.popleft()
            part.tracker.finish(message.offset)
            return True
        done = self.journal.done.get(key)
        if done is not None and done.outcome == STARTED:  # in flight when a process stopped
            part.buffer.popleft()
            await self._recording.acquire()
            await self._record(part, message, record, self._interrupted(record))
            return True
        if done is not None:  # made before a restart; its retry may not be on a tier yet
            part.buffer.popleft()
            if done.outcome == "retrying" and done.next_attempt_ms is not None:
                await self._retry_later(record, done.next_attempt_ms)
            part.tracker.finish(message.offset)
            return True
        if self.lanes.offer(lane, *self._job(part, message, record)):
            part.buffer.popleft()
            return True
        self.journal.claimed.discard(key)
        if not self.lanes.stalled(lane, self.config.lane_stall_s):
            return False  # a busy lane: the partition waits for it (paused) and goes on soon
        # A full lane whose receiver stopped answering: the record waits on the first tier
        # instead of here, so the partition goes on for everyone else.
        part.buffer.popleft()
        self._in_background(self._defer(part, message.offset, record))
        return True

    # ---- attempts --------------------------------------------------------------------------

    def _job(
        self, part: _Partition, message: ConsumerRecord[bytes, bytes], record: NotificationRecord
    ) -> tuple[Job, Prepare]:
        """An attempt as a lane job, and its preparation: its start put on the log ahead of its
        turn, so that a job does not wait for the broker in its lane slot."""
        key = (record.deliveryId, record.round, record.attempt)
        started: list[asyncio.Future[None]] = []

        def prepare() -> None:
            started.append(self.starts.mark(key))

        async def job() -> Awaitable[None] | None:
            if not started:
                prepare()
            await asyncio.shield(started[0])
            try:
                current, entry = await self._attempt(record)
            except Exception as exc:
                if self.stopping or _is_infrastructure(exc):
                    raise  # unfinished: redone after a restart
                await self._dead_letter(message, exc)
                part.tracker.finish(message.offset)
                return None
            # The lane's slot is free once the receiver answered; the record is written behind.
            await self._recording.acquire()
            return self._record(part, message, current, entry)

        return job, prepare

    async def _attempt(
        self, record: NotificationRecord
    ) -> tuple[NotificationRecord, DeliveryAttempt]:
        """Make one attempt; the notification as sent and the attempt's log record."""
        assert self.context is not None
        refusal = self.subscriptions.refusal(record)
        record = self.subscriptions.current(record)
        started_ms = int(time.time() * 1000)
        started = time.perf_counter()
        if refusal is not None:
            result = Result(delivered=False, error=refusal)
        else:
            result = await self._send(record, started_ms)
        duration_ms = int((time.perf_counter() - started) * 1000)
        ATTEMPT_SECONDS.labels(record.notificationType).observe(duration_ms / 1000)
        if result.gone and self.on_gone is not None:
            reason = f"The receiver answered 410 Gone at attempt {record.attempt}."
            try:
                await self.on_gone(record, reason)
            except Exception:  # the attempt is made: it is recorded whatever became of this
                log.exception("dispatcher.disable_failed", subscription=record.subscriptionId)
        return record, self._ended(record, result, started_ms, duration_ms)

    def _interrupted(self, record: NotificationRecord) -> DeliveryAttempt:
        """The end of an attempt a stopped process left in flight: made, and failed."""
        error = "The dispatcher stopped during this attempt; the receiver may have received it."
        result = Result(delivered=False, retryable=True, error=error)
        return self._ended(record, result, int(time.time() * 1000), 0)

    def _ended(
        self, record: NotificationRecord, result: Result, started_ms: int, duration_ms: int
    ) -> DeliveryAttempt:
        """The attempt record of a result, with the next attempt's time when there is one."""
        outcome: Outcome = "delivered" if result.delivered else "failed"
        next_ms = None
        if not result.delivered and result.retryable:
            after = result.retry_after_s
            delay = retry.next_delay_s(self.schedule, record.attempt, after, self.rng)
            if delay is not None:
                outcome = "retrying"
                next_ms = int(time.time() * 1000 + delay * 1000)
        ATTEMPTS.labels(record.notificationType, outcome).inc()
        if outcome != "delivered":
            log.info("dispatcher.attempt", delivery=record.deliveryId, attempt=record.attempt,
                     outcome=outcome, status=result.status, error=result.error)  # fmt: skip
        return attempt_record(record, result, outcome, started_ms, duration_ms, next_ms)

    async def _record(
        self,
        part: _Partition,
        message: ConsumerRecord[bytes, bytes],
        record: NotificationRecord,
        entry: DeliveryAttempt,
    ) -> None:
        """Make an attempt durable, then count its record finished (a dead letter when the
        broker refuses what it would take: too large a record)."""
        try:
            # The log first: a kill before the tier record is repaired from the log (journal).
            await self._produce(topics.DELIVERY_LOG, _encoder.encode(entry), record.deliveryId)
            self.journal.note(entry)
            if entry.nextAttemptAtMs is not None:
                await self._retry_later(record, entry.nextAttemptAtMs)
        except REFUSED_RECORD_ERRORS as exc:
            await self._dead_letter(message, exc)
        finally:
            self._recording.release()
        part.tracker.finish(message.offset)

    async def _send(self, record: NotificationRecord, now_ms: int) -> Result:
        assert self.context is not None
        try:
            secrets = open_secrets(record, self.key, now_ms)
        except ValueError:
            return Result(delivered=False, error="The subscription's secret could not be opened.")
        send = CHANNELS.get(record.notificationType)
        if send is None:
            return Result(delivered=False, error=f"Unknown channel {record.notificationType}.")
        try:
            return await send(record, secrets, self.context)
        except Exception as exc:  # a channel bug must not stall the partition: retry it
            log.exception("dispatcher.channel_error", delivery=record.deliveryId)
            error = f"Internal error: {type(exc).__name__}"
            return Result(delivered=False, retryable=True, error=error)

    async def _retry_later(self, record: NotificationRecord, due_ms: int) -> None:
        """Put the next attempt on the tier for its delay."""
        again = msgspec.structs.replace(record, attempt=record.attempt + 1, dueAtMs=due_ms)
        delay_s = max(0.0, (due_ms - time.time() * 1000) / 1000)
        tier = topics.retry_tier(retry.tier_for(self.schedule, delay_s))
        await self._produce(tier, _encoder.encode(again), record.subscriptionId)

    async def _defer(self, part: _Partition, offset: int, record: NotificationRecord) -> None:
        """Put an attempt that found its lane full on the first tier, its number unchanged."""
        DEFERRED.inc()
        due_ms = int((time.time() + self.schedule.tier_delays()[0]) * 1000)
        again = msgspec.structs.replace(record, dueAtMs=due_ms)
        await self._produce(topics.retry_tier(1), _encoder.encode(again), record.subscriptionId)
        part.tracker.finish(offset)

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _hop(self, record: NotificationRecord, remaining_ms: int) -> None:
        tier = retry.tier_for(self.schedule, remaining_ms / 1000)
        await self._produce(topics.retry_tier(tier), _encoder.encode(record), record.subscriptionId)

    async def _dead_letter(
        self, message: ConsumerRecord[bytes, bytes], error: BaseException
    ) -> None:
        """Send a record that cannot be handled to its dead-letter topic, with why."""
        is_tier = retry.tier_number(message.topic) is not None
        dlq = topics.RETRY_TIERS_DLQ if is_tier else topics.DELIVERIES_DLQ
        (RETRY_DEAD_LETTERS if is_tier else DEAD_LETTERS).inc()
        log.warning("dispatcher.dead_letter", topic=message.topic, partition=message.partition,
                    offset=message.offset, error=describe_error(error)[:200])  # fmt: skip
        headers = dead_letter_headers(message.topic, message.partition, message.offset, error)
        try:
            await self._produce(dlq, message.value or b"", None, headers)
        except REFUSED_RECORD_ERRORS:  # the value is what the broker refuses: the headers say
            await self._produce(dlq, b"", None, headers)

    async def _produce(
        self,
        topic: str,
        value: bytes,
        key: str | None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        """Produce and wait for the broker; retried until it answers (the work is not done
        until then, so a stop leaves the record unfinished and it is redone after a restart)."""
        assert self.producer is not None
        delay = 0.2
        encoded_key = key.encode(errors="replace") if key else None
        while True:
            try:
                await self.producer.send_and_wait(topic, value, key=encoded_key, headers=headers)
                return
            except KafkaError as exc:
                if self.stopping or isinstance(exc, REFUSED_RECORD_ERRORS):
                    raise
                log.warning("dispatcher.produce_retry", topic=topic, error=repr(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
