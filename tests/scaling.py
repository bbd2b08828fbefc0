"""What the scale-out test and benchmark ask of a running deployment: an HTTP service's health,
a consumer group's lag, and a whole topic read back."""

import asyncio
import subprocess
import time
from collections.abc import Iterable
from typing import Any, TypeVar

import aiohttp
import msgspec
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

T = TypeVar("T")


async def wait_healthy(
    session: aiohttp.ClientSession,
    base_url: str,
    process: subprocess.Popen[bytes],
    timeout_s: float = 60,
) -> None:
    """Wait until the API at `base_url` answers /healthz (failing if its process exits)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, "the API process exited during start-up"
        try:
            async with session.get(f"{base_url}/healthz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise TimeoutError(f"{base_url} was not healthy within {timeout_s} s")


async def _partitions(consumer: AIOKafkaConsumer, topics: Iterable[str]) -> list[TopicPartition]:
    await consumer.topics()  # fresh metadata
    return [
        TopicPartition(topic, p)
        for topic in topics
        for p in sorted(consumer.partitions_for_topic(topic) or ())
    ]


async def committed_lag(bootstrap: str, group: str, topics: Iterable[str]) -> int:
    """Records of `topics` past `group`'s committed offsets (a partition without a commit counts
    from its beginning)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                                enable_auto_commit=False)  # fmt: skip
    await consumer.start()
    try:
        tps = await _partitions(consumer, topics)
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        lag = 0
        for tp in tps:
            committed = await consumer.committed(tp)
            lag += max(0, ends[tp] - (starts[tp] if committed is None else committed))
        return lag
    finally:
        await consumer.stop()


async def read_topic(
    bootstrap: str, topic: str, kind: type[T], quiet_s: float = 0.5, timeout_s: float = 60
) -> list[T]:
    """Every record of `topic` decoded as `kind` (records that are not are skipped), read until
    the end offsets are reached and nothing more came for `quiet_s` (the embedded broker reports
    ends a little short)."""
    decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(kind)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    found: list[T] = []
    try:
        tps = await _partitions(consumer, [topic])
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        deadline = time.monotonic() + timeout_s
        last_record = time.monotonic()
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=100, max_records=10_000)
            for records in batch.values():
                for record in records:
                    try:
                        found.append(decoder.decode(record.value or b""))
                    except msgspec.DecodeError:
                        continue
            now = time.monotonic()
            if batch:
                last_record = now
            reached = all([await consumer.position(tp) >= end for tp, end in ends.items()])
            if reached and now - last_record >= quiet_s:
                return found
        raise TimeoutError(f"{topic} was not read to its end within {timeout_s} s")
    finally:
        await consumer.stop()
