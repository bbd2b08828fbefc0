"""Benchmark: what one fetch that returns new records costs the embedded broker, as its topic fills.

A follower (a consumer at the end of a partition, as the dispatcher's journal, the alert engine
and the log sink are while they keep up) reads each record soon after it is written, so most of
its fetches return a few records. This fills one topic of a fresh embedded broker in steps of
`BENCH_BROKER_STEP` records (large batches, on another partition), and after each step measures
the broker's CPU per record for a producer alone (one record per request) and for the same
producer with a follower fetching every record as it comes. The baseline is the first step's
figure, measured in the same run; `growth` is the last step's over it.

What it showed on two cores (Tansu 0.6, memory storage): a producer's request costs the broker
about 0.15-0.2 ms whatever the topic holds, but a fetch that returns records costs it time that
grows with everything the topic holds, not only with the fetched partition: 0.7-1.3 ms once the
topic holds 9,000 records, 2.7-3.3 ms at 60,000 (two runs). The broker enforces no retention and refuses
DeleteRecords, so its topics only grow while `codecourier up` runs (see deploy/README).
"""

import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from services.common.broker import EmbeddedBroker
from services.common.kafka import ensure_topics
from services.common.log import configure_logging
from tests.bench.load import cpu_seconds

STEPS = int(os.environ.get("BENCH_BROKER_STEPS", "6"))
STEP = int(os.environ.get("BENCH_BROKER_STEP", "10000"))  # records added to the topic per step
PROBES = int(
    os.environ.get("BENCH_BROKER_PROBES", "300")
)  # records written (and followed) per step
TOPIC = "delivery-log"
VALUE = b"x" * 600


async def per_record_us(pid: int, work: Callable[[], Awaitable[None]]) -> int:
    """The broker's CPU per probe record while `work` writes (and perhaps follows) them."""
    before = cpu_seconds(pid)
    await work()
    return round((cpu_seconds(pid) - before) * 1e6 / PROBES)


async def main() -> dict[str, Any]:
    configure_logging("warning")
    broker = EmbeddedBroker(0, Path(tempfile.mkdtemp(prefix="cc-bench-broker-")) / "broker.log")
    bootstrap = await broker.start()
    assert broker.process is not None
    pid = broker.process.pid
    await ensure_topics(bootstrap, 8)
    filler = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=1 << 20)
    writer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    # A short fetch wait: the broker answers a waiting fetch only when its wait is up.
    follower = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=10
    )
    followed = TopicPartition(TOPIC, 1)
    steps = []
    try:
        for client in (filler, writer, follower):
            await client.start()
        follower.assign([followed])

        async def write() -> None:
            for _ in range(PROBES):
                await writer.send_and_wait(TOPIC, VALUE, partition=followed.partition)

        async def write_and_follow() -> None:
            for _ in range(PROBES):
                await writer.send_and_wait(TOPIC, VALUE, partition=followed.partition)
                while not sum(map(len, (await follower.getmany(timeout_ms=200)).values())):
                    pass

        for _ in range(STEPS):
            sent = [await filler.send(TOPIC, VALUE, partition=0) for _ in range(STEP)]
            await asyncio.gather(*sent)
            held = sum(
                (await follower.end_offsets([TopicPartition(TOPIC, p) for p in (0, 1)])).values()
            )
            produce_us = await per_record_us(pid, write)
            follower.seek(followed, (await follower.end_offsets([followed]))[followed])
            follow_us = await per_record_us(pid, write_and_follow)
            steps.append({"topic_records": held, "produce_us": produce_us,
                          "produce_and_follow_us": follow_us})  # fmt: skip
            print(f"  {held} records held: {produce_us} us per produce, {follow_us} us with a "
                  "follower", file=sys.stderr, flush=True)  # fmt: skip
    finally:
        for client in (filler, writer, follower):
            await client.stop()
        broker.stop()
    fetch_first = steps[0]["produce_and_follow_us"] - steps[0]["produce_us"]
    fetch_last = steps[-1]["produce_and_follow_us"] - steps[-1]["produce_us"]
    return {
        "benchmark": "broker",
        "steps": steps,
        "fetch_us_first": fetch_first,
        "fetch_us_last": fetch_last,
        "growth": round(fetch_last / max(1, fetch_first), 2),
        "notes": "broker CPU per record; fetch = with a follower minus the producer alone",
    }


if __name__ == "__main__":
    started = time.time()
    result = asyncio.run(main())
    result["wall_s"] = round(time.time() - started, 1)
    print(json.dumps(result, indent=2))
