"""The API's producer speaks the AppError tree: the broker's failures are Unavailable, a record
the broker refuses keeps the driver's error (the caller dead-letters or reports it)."""

import asyncio
from typing import Any, cast

import pytest
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    NotLeaderForPartitionError,
)

from schemas import topics
from services.common.errors import Unavailable
from services.common.kafkaclients import Producer, is_refused, translated


class Driver:
    """An aiokafka producer that fails as told: at send, or in the future it returns."""

    def __init__(self, at_send: Exception | None = None, later: Exception | None = None) -> None:
        self.at_send = at_send
        self.later = later
        self.sent: list[tuple[str, bytes | None, bytes | None]] = []

    async def send(
        self, topic: str, value: bytes | None, key: bytes | None = None, **_: Any
    ) -> Any:
        if self.at_send is not None:
            raise self.at_send
        self.sent.append((topic, value, key))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.later is not None:
            future.set_exception(self.later)
        else:
            future.set_result(len(self.sent))
        return future

    async def send_and_wait(self, topic: str, value: bytes | None, **kw: Any) -> Any:
        return await (await self.send(topic, value, **kw))

    async def partitions_for(self, topic: str) -> set[int]:
        if self.at_send is not None:
            raise self.at_send
        return {0, 1}


def producer(driver: Driver) -> Producer:
    return Producer(cast(Any, driver))


@pytest.mark.parametrize(
    ("topic", "what"),
    [
        (topics.EXECUTIONS, "The event log is unavailable"),
        (topics.COMMANDS, "The command log is unavailable"),
        (topics.NOTIFICATIONS, "The notification log is unavailable"),
        (topics.SUBSCRIPTIONS, f"The topic {topics.SUBSCRIPTIONS} is unavailable"),
    ],
)
def test_a_broker_failure_is_unavailable_naming_the_log(topic: str, what: str) -> None:
    cause = KafkaConnectionError("no route")
    error = translated(cause, topic)
    assert isinstance(error, Unavailable) and error.retryable and error.status == 503
    assert error.message == f"{what} (KafkaConnectionError); retry."
    assert error.__cause__ is cause
    assert isinstance(translated(ConnectionResetError(), topic), Unavailable)


@pytest.mark.parametrize(
    "error", [MessageSizeTooLargeError("too large"), AssertionError("Unrecognized partition")]
)
def test_a_record_the_broker_refuses_keeps_its_error(error: Exception) -> None:
    assert translated(error, topics.EXECUTIONS) is error
    assert is_refused(error)


def test_only_the_records_own_faults_count_as_refused() -> None:
    for error in (KafkaConnectionError(), NotLeaderForPartitionError(), Unavailable("down")):
        assert not is_refused(error)
    assert is_refused(ValueError("not encodable"))


async def test_every_send_translates_what_the_broker_raises() -> None:
    down = producer(Driver(at_send=KafkaConnectionError("away")))
    with pytest.raises(Unavailable, match="event log"):
        await down.send_all(topics.EXECUTIONS, [(b"{}", b"k")])
    with pytest.raises(Unavailable, match="command log"):
        await down.send_and_wait(topics.COMMANDS, b"{}", key=b"k")
    with pytest.raises(Unavailable):
        await down.send(topics.SUBSCRIPTIONS, b"{}")
    with pytest.raises(Unavailable):
        await down.partitions_for(topics.SUBSCRIPTIONS)


async def test_a_failed_acknowledgement_is_translated_too() -> None:
    slow = producer(Driver(later=KafkaTimeoutError()))
    with pytest.raises(Unavailable, match="event log"):
        await slow.send_all(topics.EXECUTIONS, [(b"{}", b"a"), (b"{}", b"b")])
    with pytest.raises(Unavailable):
        await (await slow.send(topics.SUBSCRIPTIONS, b"{}"))
    refusing = producer(Driver(later=MessageSizeTooLargeError()))
    with pytest.raises(MessageSizeTooLargeError):
        await (await refusing.send(topics.SUBSCRIPTIONS, b"{}"))


async def test_records_reach_the_driver_in_order_with_their_keys() -> None:
    driver = Driver()
    await producer(driver).send_all(topics.EXECUTIONS, [(b"1", b"a"), (b"2", b"b")])
    assert driver.sent == [(topics.EXECUTIONS, b"1", b"a"), (topics.EXECUTIONS, b"2", b"b")]
    assert await (await producer(driver).send(topics.COMMANDS, b"3")) == 3
    assert await producer(driver).partitions_for(topics.SUBSCRIPTIONS) == {0, 1}
