"""Kafka plumbing: record size limits, producers, explicit topic creation, dead-letter headers,
readiness, offsets and fetch waits (the embedded broker itself is in `services.common.broker`)."""

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    CorruptRecordException,
    InvalidTopicError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
)
from aiokafka.structs import TopicPartition

from schemas import topics
from services.common.errors import PayloadTooLarge, Unavailable

log = structlog.get_logger(__name__)

TOPIC_ALREADY_EXISTS = 36
# One limit from the edge to the log: the API refuses a record over MAX_RECORD_BYTES (413) before
# producing it; the producer takes a record that size plus its framing; every topic is created
# with a `max.message.bytes` that holds the producer's largest request, one full batch included.
MAX_RECORD_BYTES = 1024 * 1024
PRODUCER_MAX_REQUEST_BYTES = MAX_RECORD_BYTES + 64 * 1024
PRODUCER_MAX_BATCH_BYTES = 1024 * 1024
TOPIC_MAX_MESSAGE_BYTES = max(PRODUCER_MAX_REQUEST_BYTES, PRODUCER_MAX_BATCH_BYTES) + 64 * 1024


async def ping(bootstrap: str, timeout_s: float = 2.0) -> None:
    """Raise Unavailable unless the cluster answers a metadata request."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000)
    )
    try:
        await asyncio.wait_for(admin.start(), timeout_s)
        await asyncio.wait_for(admin.list_topics(), timeout_s)
    except (TimeoutError, KafkaError, OSError) as exc:
        raise Unavailable(f"kafka unreachable at {bootstrap}: {type(exc).__name__}") from exc
    finally:
        with contextlib.suppress(Exception):
            await admin.close()


def check_record_size(value: bytes, key: bytes | None, what: str) -> None:
    """Refuse a record the log could not take, before anything is produced (never a stall)."""
    size = len(value) + len(key or b"")
    if size > MAX_RECORD_BYTES:
        raise PayloadTooLarge(
            f"The {what} would be a {size}-byte record; the limit is {MAX_RECORD_BYTES}."
        )


class KafkaProbe:
    """One admin client kept for readiness checks (opening one per check costs a connection)."""

    def __init__(self, bootstrap: str, timeout_s: float = 2.0) -> None:
        self._bootstrap = bootstrap
        self._timeout_s = timeout_s
        self._admin: AIOKafkaAdminClient | None = None

    async def ping(self) -> None:
        """Raise Unavailable unless the cluster answers a metadata request."""
        try:
            if self._admin is None:
                self._admin = AIOKafkaAdminClient(
                    bootstrap_servers=self._bootstrap,
                    request_timeout_ms=int(self._timeout_s * 1000),
                )
                await asyncio.wait_for(self._admin.start(), self._timeout_s)
            await asyncio.wait_for(self._admin.list_topics(), self._timeout_s)
        except (TimeoutError, KafkaError, OSError) as exc:
            await self.close()  # the next check starts afresh
            reason = f"kafka unreachable at {self._bootstrap}: {type(exc).__name__}"
            raise Unavailable(reason) from exc

    async def close(self) -> None:
        """Close the client, if one is open."""
        admin, self._admin = self._admin, None
        if admin is not None:
            with contextlib.suppress(Exception):
                await admin.close()


def make_producer(bootstrap: str) -> AIOKafkaProducer:
    """A producer that returns only once every replica has the record (acks=all).

    No idempotent producer: the embedded broker does not support it, and consumers deduplicate.
    """
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=2,
        max_batch_size=PRODUCER_MAX_BATCH_BYTES,
        max_request_size=PRODUCER_MAX_REQUEST_BYTES,
        request_timeout_ms=30_000,
    )


def topic_config(name: str) -> dict[str, str]:
    """The explicit configuration of a topic: its message limit and, if compacted, the policy."""
    config = {"max.message.bytes": str(TOPIC_MAX_MESSAGE_BYTES)}
    if name in topics.COMPACTED:
        config["cleanup.policy"] = "compact"
    return config


# Broker errors that blame the record: producing it again fails again. Any other Kafka error is
# the broker's (down, no leader, a timeout) and worth retrying.
REFUSED_RECORD_ERRORS = (
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
    CorruptRecordException,
    InvalidTopicError,
)


def describe_error(error: BaseException | str) -> str:
    """An error as one line for a dead letter's header or a log (never raises)."""
    if isinstance(error, str):
        return error
    try:
        text = str(error)
    except Exception:  # a broken __str__ must not stop a dead letter
        text = ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def dead_letter_headers(
    topic: str, partition: int | None, offset: int | None, error: BaseException | str
) -> list[tuple[str, bytes]]:
    """Headers of a dead letter: why it was refused and where it came from."""
    where = f"{topic}/{'' if partition is None else partition}/{'' if offset is None else offset}"
    return [
        ("error", describe_error(error)[:1000].encode(errors="replace")),
        ("source", where.encode(errors="replace")),
    ]


def topic_specs(partitions: int, names: tuple[str, ...] = topics.ALL) -> list[NewTopic]:
    """Every topic with its partition count and explicit configuration."""
    return [
        NewTopic(
            name, num_partitions=partitions, replication_factor=1, topic_configs=topic_config(name)
        )
        for name in names
    ]


async def ensure_topics(
    bootstrap: str,
    partitions: int,
    replication_factor: int = 1,
    retry_tiers: int = 5,
    *,
    recreate_miscounted: bool = False,
) -> list[str]:
    """Create missing topics explicitly (auto-creation picks the wrong partition count), with
    the dispatcher's `retry_tiers` delay tiers (one per entry of `CC_RETRY_DELAYS`).

    `recreate_miscounted` deletes and creates again every topic whose partition count is not
    `partitions`: only for a broker that just started empty, where such a topic can only have
    been auto-created by a client that asked for it first, and holds nothing to keep."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        names = (*topics.ALL, *topics.retry_tiers(retry_tiers))
        if recreate_miscounted and (present := [n for n in names if n in existing]):
            described = await admin.describe_topics(present)
            wrong = [d["topic"] for d in described if len(d["partitions"]) != partitions]
            if wrong:
                log.warning("kafka.topics_recreated", topics=wrong, partitions=partitions)
                await admin.delete_topics(wrong)
                existing.difference_update(wrong)
        missing = [spec for spec in topic_specs(partitions, names) if spec.name not in existing]
        for spec in missing:
            spec.replication_factor = replication_factor
        if missing:
            response = await admin.create_topics(missing)
            for name, code, *_ in response.topic_errors:
                if code not in (0, TOPIC_ALREADY_EXISTS):
                    raise Unavailable(f"could not create topic {name}: error {code}")
        return [spec.name for spec in missing]
    finally:
        await admin.close()


async def end_offsets(bootstrap: str, names: Iterable[str]) -> dict[TopicPartition, int]:
    """The offset the next record of every partition of `names` will get."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()  # a metadata refresh, so that every partition is known
        tps = [
            TopicPartition(name, partition)
            for name in names
            for partition in consumer.partitions_for_topic(name) or ()
        ]
        return dict(await consumer.end_offsets(tps)) if tps else {}
    finally:
        await consumer.stop()


class GroupOffsets:
    """Reads what a consumer group has committed, without joining it (an async context manager;
    the embedded broker does not answer the admin API's OffsetFetch)."""

    def __init__(self, bootstrap: str, group: str) -> None:
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
        )

    async def __aenter__(self) -> "GroupOffsets":
        await self.consumer.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.consumer.stop()

    async def committed(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """The next offset the group will read, per partition of `tps` that has a commit."""
        wanted = list(tps)
        found = await asyncio.gather(*(self.consumer.committed(tp) for tp in wanted))
        return {tp: offset for tp, offset in zip(wanted, found, strict=True) if offset is not None}


# A consumer that wants records soon waits its own short time per fetch while records come, and
# QUIET_WAIT_MS once none has come for QUIET_AFTER_S (see `FetchWait`).
QUIET_AFTER_S = 1.0
QUIET_WAIT_MS = 250


def fetch_wait_ms(quiet_for_s: float, busy_ms: int, quiet_ms: int = QUIET_WAIT_MS) -> int:
    """The maximum wait of the next fetch, after `quiet_for_s` seconds without a record."""
    return quiet_ms if quiet_for_s >= QUIET_AFTER_S else busy_ms


class FetchWait:
    """A consumer's fetch wait: short while records come, long once it has been quiet.

    The embedded broker answers a waiting fetch only when its maximum wait is up (not when data
    arrives), so the wait bounds how late a record is seen, and each wait costs the broker a
    re-read of every partition in the fetch. The 25 ms waits of the alert engine and the
    dispatcher kept about a fifth of a core busy at rest. Once no record has come for
    QUIET_AFTER_S, fetches wait QUIET_WAIT_MS instead; the first record back (seen up to that
    much later) makes them short again. Apache Kafka answers a waiting fetch when data arrives,
    so there the long wait costs nothing.
    """

    def __init__(
        self,
        busy_ms: int,
        quiet_ms: int = QUIET_WAIT_MS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.busy_ms = busy_ms
        self.quiet_ms = quiet_ms
        self.clock = clock
        self.last_record_at = clock()

    def after_fetch(self, consumer: object, records: int) -> int:
        """Note what a fetch of an aiokafka `consumer` gave; set and return its next wait (a
        consumer not started, or a stand-in without aiokafka's fetcher, is left alone)."""
        now = self.clock()
        if records:
            self.last_record_at = now
        wait_ms = fetch_wait_ms(now - self.last_record_at, self.busy_ms, self.quiet_ms)
        fetcher = getattr(consumer, "_fetcher", None)  # read for each fetch request it builds
        if fetcher is not None:
            fetcher._fetch_max_wait_ms = wait_ms
        return wait_ms
