"""What the engine reads of a consumed record, and what becomes of a record it cannot handle.

A record whose handling raises anything but a retryable `AppError` (`Unavailable`, the broker) is
poison: `settle` sends it to the dead-letter topic with the error and returns, so processing goes
on with the next record. `Unavailable` is waited out with back-off on the same record, since
every record would meet it.
"""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

import msgspec
import structlog
from prometheus_client import Counter

from schemas.destinations import RecordDecoder
from services.common.errors import AppError

log = structlog.get_logger(__name__)

RETRY_FIRST_S = 0.5
RETRY_MAX_S = 30.0
MAX_REASON = 1000

DEAD_LETTERS = Counter(
    "cc_alerts_dead_letters", "Records the alert engine sent to alerts.dlq", ["topic"]
)
T = TypeVar("T")


class Message(Protocol):
    """What the engine reads of a consumed record (faust's message has these attributes)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: float


DeadLetter = Callable[[Message, str], Awaitable[None]]


class PoisonRecord(Exception):
    """A record the engine cannot read (undecodable, or not of its topic's schema)."""


def decode(decoder: "msgspec.json.Decoder[T] | RecordDecoder[T]", value: bytes | None) -> T:
    """A record's value decoded, or PoisonRecord."""
    try:
        return decoder.decode(value or b"")
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise PoisonRecord(str(exc)) from exc


async def settle(
    message: Message, work: Callable[[Message], Awaitable[None]], dead_letters: DeadLetter
) -> None:
    """Run `work` on a record: dead-letter it when it fails, retry while the broker is out."""
    backoff = _Backoff()
    while True:
        try:
            await work(message)
            return
        except Exception as exc:  # whatever one record raises is that record's
            if not _retryable(exc):
                await dead_letter(message, exc, dead_letters)
                return
            await backoff.wait(message, exc)


async def dead_letter(message: Message, exc: Exception, dead_letters: DeadLetter) -> None:
    """Send a record that failed to the dead-letter topic, with the error."""
    reason = describe(exc)
    log.warning("alerts.dead_letter", topic=message.topic, partition=message.partition,
                offset=message.offset, error=reason)  # fmt: skip
    DEAD_LETTERS.labels(message.topic).inc()
    backoff = _Backoff()
    while True:
        try:
            await dead_letters(message, reason)
            return
        except Exception as failure:  # the record is skipped all the same, never retried
            if not _retryable(failure):
                log.error("alerts.dead_letter_failed", topic=message.topic,
                          partition=message.partition, offset=message.offset,
                          error=describe(failure))  # fmt: skip
                return
            await backoff.wait(message, failure)


def describe(exc: Exception) -> str:
    """The error for the dead-letter header: its type and message, bounded."""
    try:
        text = f"{type(exc).__name__}: {exc}"
    except Exception:  # a message that cannot be rendered (an int too long for str)
        text = type(exc).__name__
    return text[:MAX_REASON]


def _retryable(exc: Exception) -> bool:
    return isinstance(exc, AppError) and exc.retryable


class _Backoff:
    """Doubling waits, from RETRY_FIRST_S up to RETRY_MAX_S, each one logged."""

    def __init__(self) -> None:
        self.delay_s = RETRY_FIRST_S

    async def wait(self, message: Message, exc: Exception) -> None:
        log.warning("alerts.unavailable", topic=message.topic, offset=message.offset,
                    partition=message.partition, error=describe(exc),
                    retry_in_s=self.delay_s)  # fmt: skip
        await asyncio.sleep(self.delay_s)
        self.delay_s = min(self.delay_s * 2, RETRY_MAX_S)
